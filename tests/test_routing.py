"""Routing by customer value: the decision (a table of cases), the admin's page with its clear
errors (nothing saved then) and audit entries, and the app's FastAGI server answering a real
socket from the real SQLite archive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select
from test_fastagi import ENVIRONMENT, exchange
from test_pops import (
    AMI_SECRET,
    CHEAP_ARGON2,
    CSRF_RE,
    PASSWORD,
    ZHANG_SAN,
    Site,
    hashed,
    seed,
    served,
)

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.db.models import (
    AccountManager,
    AuditEntry,
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    RoutingSettings,
    RoutingTier,
    User,
)
from crm_bridge.routing.domain import (
    LABEL_COMPLAINT,
    LABEL_HIGH_VALUE,
    LABEL_VIP,
    CallerFacts,
    Decision,
    RoutingRules,
    decide,
)
from crm_bridge.settings import Settings
from telephony.call_events import AgentRinging
from telephony.call_tracker import CallTracker
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

RULES = RoutingRules(tiers={"金卡": 10, "银卡": 3}, high_value_cents=5_000_00,
                     high_value_priority=5, manager_ring_seconds=12,
                     complaint_queue="senior")  # fmt: skip


def facts(vip=None, spend="0", complaints=0, manager=None) -> CallerFacts:
    return CallerFacts(1, vip, Decimal(spend), complaints, manager)


READY = {"1002"}


@pytest.mark.parametrize(
    ("caller", "decision"),
    [
        (None, Decision()),
        (facts(), Decision()),
        (facts("普通"), Decision()),
        (facts("金卡"), Decision(10, labels=(LABEL_VIP,))),
        (facts("银卡", spend="6000"), Decision(5, labels=(LABEL_HIGH_VALUE,))),
        (facts("金卡", spend="6000"), Decision(10, labels=(LABEL_VIP,))),
        (facts(spend="4999.99"), Decision()),
        (facts(manager="1002"), Decision(0, "1002", 12, labels=("专属客户经理 1002",))),
        (facts(manager="1001"), Decision()),  # not ready: the queue at once
        (facts("金卡", complaints=1, manager="1002"),
         Decision(10, queue="senior", labels=(LABEL_VIP, LABEL_COMPLAINT))),
    ],
)  # fmt: skip
def test_the_decision(caller, decision):
    assert decide(caller, RULES, READY.__contains__) == decision


def test_the_answer_the_dialplan_reads():
    assert Decision().answer() == "||||"
    assert Decision(10, labels=(LABEL_VIP,)).answer() == "10||||VIP · 优先接入"
    assert Decision(0, "1002", 12, labels=("专属客户经理 1002",)).answer() == (
        "|1002|12||专属客户经理 1002"
    )
    assert Decision(3, queue="senior", labels=("投诉跟进",)).answer() == "3|||senior|投诉跟进"


def test_no_complaint_queue_means_the_usual_treatment():
    rules = RoutingRules(tiers={"金卡": 10})
    assert decide(facts("金卡", complaints=2), rules, READY.__contains__) == Decision(
        10, labels=(LABEL_VIP,)
    )


# --------------------------------------------------------------------------- the app

ADMIN = "root"


@asynccontextmanager
async def routing_site(tmp_path) -> AsyncIterator[Site]:
    """The seeded app (an admin besides the agents; 张三 a 金卡 customer who spent 8,000 this
    year) on a simulator, its FastAGI server on a free port."""
    async with AmiSimulator(username="bridge", secret=AMI_SECRET) as simulator:
        settings = Settings(data_dir=tmp_path, ami_host="127.0.0.1", ami_port=simulator.port,
                            ami_username="bridge", ami_secret=AMI_SECRET,
                            api_token="test-token-0123456789",
                            secret_key="a-test-secret-key-of-some-length",
                            routing_port=0)  # fmt: skip
        seed(settings.database_url)
        app = create_app(settings)
        async with served(app) as address:
            site = Site(simulator, app, address, settings)
            with site.sessions().begin() as session:
                session.add(User(username=ADMIN, password_hash=hashed(PASSWORD), role="admin",
                                 extensions=[]))  # fmt: skip
                zhang = session.scalar(select(Customer).where(Customer.card_no == "C0001"))
                session.add(Purchase(customer_id=zhang.id, purchased_on=datetime.now(UTC).date(),
                                     amount=Decimal("8000.00")))  # fmt: skip
            yield site


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with routing_site(tmp_path) as running:
        yield running


async def csrf(client) -> str:
    return CSRF_RE.search((await client.get("/admin/routing")).text).group(1)


def snapshot(site: Site) -> tuple:
    with site.sessions()() as session:
        return (
            [(t.tier, t.priority) for t in session.scalars(select(RoutingTier))],
            [(s.high_value_cents, s.manager_ring_seconds, s.complaint_queue)
             for s in session.scalars(select(RoutingSettings))],
            [(m.customer_id, m.extension) for m in session.scalars(select(AccountManager))],
        )  # fmt: skip


def audit_actions(site: Site) -> list[str]:
    with site.sessions()() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


async def ask(site: Site, number: str) -> list[str]:
    """What the app's FastAGI server answers for a call from ``number``."""
    environment = ENVIRONMENT.replace("agi_arg_1: 13800138000", f"agi_arg_1: {number}")
    return await exchange(site.app.state.runtime.routing.server.port, environment)


async def test_bad_rules_are_refused_with_their_reason_and_nothing_changes(site):
    async with site.signed_in(ADMIN) as admin:
        token = await csrf(admin)
        before = snapshot(site)
        cases = [
            ("/admin/routing/tiers", {"tier": "钻石卡", "priority": "10"},
             "没有这个会员等级的客户"),
            ("/admin/routing/tiers", {"tier": "金卡", "priority": "0"}, "优先级须为 1 到 100"),
            ("/admin/routing/settings", {"high_value_yuan": "lots", "high_value_priority": "5",
                                         "manager_ring_seconds": "15", "complaint_queue": ""},
             "金额须为不小于 0 的数字"),
            ("/admin/routing/settings", {"high_value_yuan": "", "high_value_priority": "5",
                                         "manager_ring_seconds": "2", "complaint_queue": ""},
             "振铃时间须为 5 到 60 秒"),
            ("/admin/routing/settings", {"high_value_yuan": "", "high_value_priority": "5",
                                         "manager_ring_seconds": "15",
                                         "complaint_queue": "sen,ior"}, "没有这个队列"),
            ("/admin/routing/managers", {"card_no": "C9999", "extension": "1002"},
             "没有这个会员卡号"),
            ("/admin/routing/managers", {"card_no": "C0001", "extension": "1009"},
             "没有坐席使用这个分机"),
        ]  # fmt: skip
        for path, form, message in cases:
            response = await admin.post(path, data={"csrf_token": token, **form})
            assert response.status_code == 400, (path, form)
            assert message in response.text and 'role="alert"' in response.text
            assert f'value="{next(iter(form.values()))}"' in response.text  # kept as typed
        assert snapshot(site) == before
        assert audit_actions(site) == []
        missing = await admin.post("/admin/routing/tiers/77/delete", data={"csrf_token": token})
        assert missing.status_code == 404


async def test_the_admin_sets_the_rules_and_the_next_call_follows_them(site):
    assert await ask(site, "13800138000") == ['SET VARIABLE CC_ROUTE_ANSWER "||||"\n']
    async with site.signed_in(ADMIN) as admin:
        token = await csrf(admin)
        form = {"csrf_token": token, "tier": "金卡", "priority": "10"}
        assert (await admin.post("/admin/routing/tiers", data=form)).status_code == 303
        assert await ask(site, "13800138000") == [
            'SET VARIABLE CC_ROUTE_ANSWER "10||||VIP · 优先接入"\n'
        ]
        form = {"csrf_token": token, "high_value_yuan": "5000", "high_value_priority": "20",
                "manager_ring_seconds": "12", "complaint_queue": "senior"}  # fmt: skip
        assert (await admin.post("/admin/routing/settings", data=form)).status_code == 303
        assert await ask(site, "+86 138 0013 8000") == [
            'SET VARIABLE CC_ROUTE_ANSWER "20||||高价值 · 优先接入"\n'
        ]
        form = {"csrf_token": token, "card_no": "C0001", "extension": "1002"}
        assert (await admin.post("/admin/routing/managers", data=form)).status_code == 303
        page = (await admin.get("/admin/routing")).text
        assert "张三" in page and "1002" in page and 'value="5000.00"' in page
        with site.sessions().begin() as session:
            zhang = session.scalar(select(Customer).where(Customer.card_no == "C0001"))
            session.add(Complaint(customer_id=zhang.id, received_at=datetime.now(UTC),
                                  content="退货太慢"))  # fmt: skip
        assert await ask(site, "13800138000") == [
            'SET VARIABLE CC_ROUTE_ANSWER "20|||senior|高价值 · 优先接入 · 投诉跟进"\n'
        ]
        tier_id = snapshot_tier_id(site)
        delete = f"/admin/routing/tiers/{tier_id}/delete"
        assert (await admin.post(delete, data={"csrf_token": token})).status_code == 303
    assert audit_actions(site) == ["routing_tier_add", "routing_settings",
                                   "account_manager_set", "routing_tier_remove"]  # fmt: skip


def snapshot_tier_id(site: Site) -> int:
    with site.sessions()() as session:
        return session.scalar(select(RoutingTier.id))


async def test_unknown_family_and_withheld_callers_get_the_plain_queue(site):
    with site.sessions().begin() as session:
        session.add(RoutingTier(tier="金卡", priority=10))
        session.add(Customer(card_no="C0002", name="张太太", vip_level="金卡",
                             phones=[CustomerPhone(number_e164="+8613900139000")]))
        session.add(Customer(card_no="C0003", name="张先生", vip_level="金卡",
                             phones=[CustomerPhone(number_e164="+8613900139000")]))
    site.app.state.runtime.routing.reload_rules()
    plain = ['SET VARIABLE CC_ROUTE_ANSWER "||||"\n']
    for number in ("13700000000", "13900139000", "anonymous", ""):
        assert await ask(site, number) == plain, number
    assert await ask(site, ZHANG_SAN) != plain


async def test_the_admin_page_is_for_admins_only(site):
    async with site.signed_in("lin") as supervisor:
        assert (await supervisor.get("/admin/routing")).status_code == 403


async def test_many_requests_at_once_are_all_answered(site):
    with site.sessions().begin() as session:
        session.add(RoutingTier(tier="金卡", priority=10))
    site.app.state.runtime.routing.reload_rules()
    answers = await asyncio.gather(*(ask(site, "13800138000") for _ in range(50)))
    assert all(a == ['SET VARIABLE CC_ROUTE_ANSWER "10||||VIP · 优先接入"\n'] for a in answers)
    assert site.app.state.runtime.routing.server.counts.answered == 50


async def test_a_taken_port_leaves_routing_off_and_the_service_up(tmp_path):
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        async with AmiSimulator(username="bridge", secret=AMI_SECRET) as simulator:
            settings = Settings(data_dir=tmp_path, ami_port=simulator.port,
                                ami_username="bridge", ami_secret=AMI_SECRET,
                                api_token="test-token-0123456789",
                                secret_key="a-test-secret-key-of-some-length",
                                routing_port=port)  # fmt: skip
            seed(settings.database_url)
            app = create_app(settings)
            async with served(app):
                assert app.state.runtime.routing is None
    finally:
        blocker.close()


# --------------------------------------------------------------------------- the tracker


def test_the_tracker_carries_the_label_the_dialplan_set_to_the_ringing_agent():
    """A recorded inbound call, with the VarSet ``callbridge-route`` makes on the customer's
    channel before ``Queue()`` put in after the channel's first dialplan step."""
    trace = load_trace(RECORDED_TRACES / "sip" / "a_inbound_answered_1001.ami")
    events = [dict(e) for e in trace.events]
    inbound = [i for i, e in enumerate(events)
               if e["Event"] == "Newexten" and e.get("Context") == "from-customers"]  # fmt: skip
    first_step = inbound[0]
    customer = events[first_step]
    varset = {"Event": "VarSet", "Channel": customer["Channel"], "Uniqueid": customer["Uniqueid"],
              "Linkedid": customer["Linkedid"], "Variable": "CC_ROUTE", "Value": LABEL_VIP,
              "Timestamp": customer.get("Timestamp", "")}  # fmt: skip
    tracker = CallTracker()
    out = tracker.feed_all([*events[: first_step + 1], varset, *events[first_step + 1 :]])
    ringing = [e for e in out if isinstance(e, AgentRinging)]
    assert ringing and all(e.call.route == LABEL_VIP for e in ringing)
    raw = (b"Event: VarSet\r\nPrivilege: dialplan,all\r\nChannel: PJSIP/carrier-1\r\n"
           b"Variable: CC_ROUTE\r\nValue: x\r\nUniqueid: 1.1")  # fmt: skip
    assert tracker.sieve().keeps(raw)


def test_a_resync_takes_no_routing_channel_for_a_call():
    """A reconnect while a call asks the bridge: CoreShowChannels lists the Local pair too
    (an action's answer passes no event filter), and the tracker leaves it out."""
    channel = {"Event": "CoreShowChannel", "Context": "callbridge-route-ask", "Exten": "1.1",
               "ChannelState": "0", "Application": "AGI", "Duration": "00:00:00",
               "ApplicationData": "agi://127.0.0.1:4573/route,13800138000"}  # fmt: skip
    halves = [channel | {"Channel": "Local/1.1@callbridge-route-ask-00000001;2",
                         "Uniqueid": "1.3", "Linkedid": "1.2"},
              channel | {"Channel": "Local/1.1@callbridge-route-ask-00000001;1",
                         "Uniqueid": "1.2", "Linkedid": "1.2", "Application": ""}]  # fmt: skip
    tracker = CallTracker()
    assert tracker.resync(halves, 0.0) == [] and tracker.calls_in_flight == 0
