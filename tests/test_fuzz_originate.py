"""Hostile values on every road to an Originate: the simulator never receives an injected header
or action, the user gets a clear refusal, and nothing else is lost.

- The encoder and ``send_originate``: Hypothesis fills every field of an
  :class:`~telephony.dialer.OriginateRequest` with CR/LF, NUL, other control characters,
  commas, quotes and over-long text, and sends it over a real TCP socket to the AMI simulator.
- Click-to-call (``POST /me/click-to-call``): hostile numbers, customer ids and extensions.
- Campaigns: hostile campaign names, greetings, customer names; the campaign runner places
  the good calls and records each refused attempt with its reason.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_agent_work import FAMILY, Desk, desk  # noqa: F401 - desk is the fixture used here

from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.campaigns import store as store
from crm_bridge.campaigns.runner import CampaignRunner
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import (
    CallNote,
    Campaign,
    CampaignTarget,
    Customer,
    CustomerPhone,
    DialAttempt,
    User,
)
from telephony.ami_codec import MAX_LINE_BYTES, UnsafeAmiValue, encode_action, parse_frame
from telephony.ami_connection import AmiConfig
from telephony.call_tracker import TrackerPolicy
from telephony.dialer import Dialer, OriginateRefused, OriginateRequest, send_originate
from telephony.simulator import AmiSimulator

FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SECRET = "fuzz-originate-secret"
TZ = "Asia/Shanghai"
SENT_HEADERS = frozenset(
    {
        "action",
        "actionid",
        "username",
        "secret",
        "events",
        "channel",
        "context",
        "exten",
        "priority",
        "timeout",
        "async",
        "channelid",
        "callerid",
        "variable",
    }  # fmt: skip
)
"""Every header the bridge ever sends; anything else reaching the simulator was injected."""
SENT_ACTIONS = frozenset(
    {"login", "logoff", "ping", "coreshowchannels", "originate", "queuestatus"}
)
INJECTIONS = [
    "1\r\nAction: Command\r\nCommand: core stop now",
    "1\nAction: Command",
    "1\rAction: Command",
    "1\r\n\r\nAction: Command\r\nCommand: core stop now\r\n",
    "1\x00Action: Command",
    "1\x1b[2J",
    "1,CC_MODE=agent",
    '1",CC_MODE="agent',
    "1\\,CC_MODE=agent",
    "9" * 1100,
    "张" * 400,
]
hostile_text = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(
        alphabet=st.one_of(
            st.sampled_from(["\r", "\n", "\x00", "\t", ",", "=", '"', "\\", ":", " ", "张"]),
            st.characters(),
        ),
        max_size=60,
    ),
    st.text(alphabet="9,", min_size=900, max_size=1100),
)
variable_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True), st.sampled_from(INJECTIONS)
)


def wire_frames(raw: bytes) -> list[list[tuple[str, str]]]:
    """What the simulator read, one message per blank line, the way Asterisk frames it."""
    return [parse_frame(block) for block in raw.replace(b"\r\n", b"\n").split(b"\n\n") if block]


def assert_nothing_injected(simulator: AmiSimulator) -> None:
    """Every line of every message the simulator got is a header the bridge sends, and every
    action is one the bridge sends: no value leaked into a line or a message of its own."""
    for raw in simulator.received_raw:
        for block in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
            for line in block.split(b"\n"):
                if line:
                    key = line.split(b":", 1)[0].decode("utf-8", "replace").lower()
                    assert key in SENT_HEADERS, line[:80]
    for action in simulator.actions:
        assert action.get("Action", "").lower() in SENT_ACTIONS, action
        assert {key.lower() for key in action} <= SENT_HEADERS, action


# --------------------------------------------------------------------------- encoder


requests = st.builds(
    OriginateRequest,
    channel=st.one_of(st.just("PJSIP/1001"), hostile_text),
    context=st.one_of(st.just("internal"), hostile_text),
    exten=st.one_of(st.just("913800138000"), hostile_text),
    channel_id=st.one_of(st.uuids().map(str), hostile_text),
    action_id=st.one_of(st.just("c2c-1"), hostile_text),
    caller_id=st.one_of(st.none(), st.just('"Click-to-call" <1001>'), hostile_text),
    variables=st.dictionaries(variable_names, hostile_text, max_size=3),
)


@FUZZ
@given(request=requests)
def test_an_originate_encodes_to_its_own_lines_or_is_refused(request):
    headers = [("ActionID", request.action_id), *request.headers()]
    try:
        wire = encode_action("Originate", headers)
    except UnsafeAmiValue as refused:
        for _, value in headers:
            if len(value) > 8:
                assert value not in str(refused)  # the error names the header, never a value
        return
    assert wire.endswith(b"\r\n\r\n") and wire.count(b"\r\n\r\n") == 1
    lines = wire[:-4].split(b"\r\n")
    assert len(lines) == len(headers) + 1
    assert all(len(line) <= MAX_LINE_BYTES and b"\n" not in line for line in lines)
    assert parse_frame(wire[:-4]) == [("Action", "Originate"), *headers]
    for name, value in request.variables.items():
        assert "," not in value and "=" not in name and "\r" not in value


# --------------------------------------------------------------------------- over TCP


class Wire:
    """The simulator and a dialer's AMI session on a real socket, run by an event loop in a
    thread of their own, so that Hypothesis (synchronous) can drive many examples over one
    connection."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.simulator = AmiSimulator(secret=SECRET, originate_outcome=lambda _headers: None)
        self.port = self.run(self.simulator.start())
        config = AmiConfig(host="127.0.0.1", port=self.port, username="bridge", secret=SECRET)
        self.dialer = Dialer(config, max_concurrent=5, calls_per_second=1000)
        self.run(self.dialer.start())
        assert self.run(self.dialer.wait_connected(5))

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    def close(self) -> None:
        self.run(self.dialer.stop())
        self.run(self.simulator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture(scope="module")
def wire() -> Iterator[Wire]:
    opened = Wire()
    yield opened
    opened.close()


SENT = itertools.count(1)


@FUZZ
@given(request=requests)
def test_over_tcp_the_simulator_gets_exactly_the_request_or_nothing(wire, request):
    """The request (with a unique ActionID to find it by) reaches the simulator as one
    Originate with exactly its own values, or is refused before a byte is sent."""
    action_id = f"fz{next(SENT)}"
    request = OriginateRequest(**{**request.__dict__, "action_id": action_id})
    before = len(wire.simulator.actions)
    try:
        wire.run(send_originate(wire.dialer.connection, request))
    except UnsafeAmiValue:
        assert len(wire.simulator.actions) == before
        return
    except OriginateRefused:  # sent, and refused by the PBX (an empty Channel)
        pass
    originates = [a for a in wire.simulator.actions if a.get("ActionID") == action_id]
    assert len(originates) == 1
    frame = next(f for f in wire_frames(wire.simulator.received_raw[-1])
                 if ("ActionID", action_id) in f)  # fmt: skip
    assert frame == [("Action", "Originate"), ("ActionID", action_id), *request.headers()]


def test_after_every_example_the_session_saw_nothing_injected(wire):
    """Runs after the examples above (same module connection): the whole byte stream."""
    wire.run(send_originate(wire.dialer.connection, OriginateRequest(
        "PJSIP/1001", "internal", "100", "after-fuzz", "after-fuzz")))  # fmt: skip
    assert_nothing_injected(wire.simulator)
    assert wire.dialer.connected


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    "field", ["channel", "context", "exten", "channel_id", "caller_id", "variable"]
)
def test_each_injection_in_each_field_is_refused_or_harmless(wire, field, value):
    fields = {"channel": "PJSIP/1001", "context": "internal", "exten": "100",
              "channel_id": f"c-{next(SENT)}", "action_id": f"fz{next(SENT)}"}  # fmt: skip
    if field == "variable":
        request = OriginateRequest(**fields, variables={"CC_GREETING": value})
    else:
        request = OriginateRequest(**{**fields, field: value})
    try:
        wire.run(send_originate(wire.dialer.connection, request))
    except UnsafeAmiValue:
        return
    except OriginateRefused:
        pass
    # accepted: only a value with no line break, no NUL, and (in a variable) no comma
    assert not any(ch in value for ch in "\r\n\x00\x1b")
    assert field != "variable" or not any(ch in value for ch in ',"\\')
    assert_nothing_injected(wire.simulator)


# --------------------------------------------------------------------------- click-to-call


def agent_with_extensions(app: Desk, username: str, extensions: list[str]) -> None:
    """An agent whose extensions hold what a tampered database (or an older version) might:
    the input form refuses these, so they are written straight to the table."""
    with app.sessions.begin() as session:
        user = session.scalars(sa.select(User).where(User.username == "wang")).one()
        session.add(User(username=username, password_hash=user.password_hash, role="agent",
                         extensions=extensions))  # fmt: skip


HOSTILE_PHONES = [
    *INJECTIONS,
    "13800138000\r\nAction: Command",
    "+86 138 0013 8000,1",
    "13800138000\x00",
    "１３８００１３８０００",  # full-width digits: phonenumbers reads them, and they are 张三's
    "+8613800138000;ext=1\r\n",
    "=cmd|' /C calc'!A0",
    "",
    " ",
    "+" + "9" * 63,
]


async def test_click_to_call_refuses_hostile_numbers_with_a_4xx(desk):  # noqa: F811
    wang = await desk.signed_in("wang")
    customer = desk.customer_id("C1")
    placed = 0
    for phone in HOSTILE_PHONES:
        response = await wang.post(
            "/me/click-to-call", json={"customer_id": customer, "phone": phone}
        )
        if response.status_code == 200:  # a number of this customer, in another form
            placed += 1
            continue
        assert response.status_code in (400, 422), (phone, response.status_code)
        detail = response.json()["detail"]
        if response.status_code == 400:
            assert set(detail["errors"]) == {"phone"} and "/" in detail["errors"]["phone"]
    assert len(desk.simulator.actions_named("Originate")) == placed
    assert_nothing_injected(desk.simulator)
    assert desk.count(CallNote) == placed


async def test_click_to_call_refuses_hostile_customer_ids(desk):  # noqa: F811
    wang = await desk.signed_in("wang")
    for customer_id in (0, -1, 2**31, 2**63 - 1, 2**63, 2**100, "1\r\nAction: X", "1,2", None, 1.5):
        response = await wang.post(
            "/me/click-to-call", json={"customer_id": customer_id, "phone": FAMILY}
        )
        assert response.status_code in (400, 422), (customer_id, response.status_code)
    assert desk.simulator.actions_named("Originate") == []
    assert desk.count(CallNote) == 0


@pytest.mark.parametrize(
    "extension",
    [
        "1001\r\nAction: Command\r\nCommand: core stop now",
        "PJSIP/1001\x00",
        "Local/1@x,y\n",
        "PJSIP/" + "1" * 1100,
        "1001\rAction: Logoff",
    ],  # fmt: skip
)
async def test_a_hostile_extension_from_the_database_is_refused_by_the_encoder(
    desk,  # noqa: F811
    extension,
):
    agent_with_extensions(desk, "mallory", [extension])
    mallory = await desk.signed_in("mallory")
    response = await mallory.post(
        "/me/click-to-call", json={"customer_id": desk.customer_id("C1"), "phone": FAMILY}
    )
    assert response.status_code == 400
    assert "request" in response.json()["detail"]["errors"]
    assert desk.simulator.actions_named("Originate") == []
    assert_nothing_injected(desk.simulator)
    assert desk.count(CallNote) == 0
    # the good agent is not held up by it
    wang = await desk.signed_in("wang")
    good = await wang.post(
        "/me/click-to-call", json={"customer_id": desk.customer_id("C1"), "phone": FAMILY}
    )
    assert good.status_code == 200
    assert len(desk.simulator.actions_named("Originate")) == 1


# --------------------------------------------------------------------------- campaigns


ALL_DAY = {"start": "00:00", "end": "00:00", "max_attempts": 2,
           "retry_minutes": {"busy": 0, "no_answer": 0, "congestion": 0, "failed": 0}}  # fmt: skip
HOSTILE_NAMES = [
    "=cmd|' /C calc'!A0",
    "回访\r\nAction: Command\r\nCommand: core stop now",
    "生日,CC_MODE=agent",
    "a\x00b",
    "名" * 128,
]


def dialled_number(card: str) -> str:
    return f"139{int(card[1:]):08d}"


def add_campaign(sessions, name: str, cards: list[str], greeting: str = "greeting.wav") -> int:
    with sessions.begin() as session:
        for card in cards:
            number = f"+86{dialled_number(card)}"
            session.add(Customer(card_no=card, name=f"{name[:20]}\r\n{card}",
                                 phones=[CustomerPhone(number_e164=number)]))  # fmt: skip
        campaign = Campaign(
            name=name, kind="return_visit", mode="message", policy=ALL_DAY, greeting_file=greeting,
            rules=[{"kind": "uploaded", "entries": cards}],
        )  # fmt: skip
        session.add(campaign)
        session.flush()
        store.start_campaign(session, campaign.id, datetime.now(UTC), ZoneInfo(TZ), "CN")
        return campaign.id


async def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


async def test_campaigns_with_hostile_values_place_good_calls_and_record_refusals(sqlite_url):
    """Hostile campaign and customer names never travel (only ids do); a greeting name that
    would split the Variable header is refused by the encoder: the attempt is recorded as
    failed with reason ``unsafe`` and its target failed at once (the same campaign would make
    the same Originate again), and the other campaigns' calls are all placed."""
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    good = [add_campaign(sessions, name, [f"N{i}{j}" for j in range(2)])
            for i, name in enumerate(HOSTILE_NAMES, start=1)]  # fmt: skip
    refused = [
        add_campaign(sessions, "坏问候", ["G91"], greeting="x,CC_MODE=agent.wav"),
        add_campaign(sessions, "坏问候2", ["G92"], greeting="x\r\nAction: Command.wav"),
        add_campaign(sessions, "坏问候3", ["G93"], greeting="y" * 1100 + ".wav"),
    ]
    async with AmiSimulator(secret=SECRET, originate_speed=50) as simulator:
        config = AmiConfig(host="127.0.0.1", port=simulator.port, username="bridge", secret=SECRET)
        bridge = BridgeService([config], CallLog(sessions, NumberRules("CN")), TrackerPolicy())
        await bridge.start()
        dialer = Dialer(config, max_concurrent=3, calls_per_second=50)
        await dialer.start()
        assert await dialer.wait_connected(5)
        runner = CampaignRunner(
            sessions, dialer, center_timezone=TZ, region="CN", grace=timedelta(seconds=2)
        )
        await runner.start()
        try:

            def settled() -> bool:
                with sessions() as session:
                    open_targets = session.scalar(
                        sa.select(sa.func.count())
                        .select_from(CampaignTarget)
                        .where(CampaignTarget.state.in_(("pending", "dialing")))
                    )
                    return open_targets == 0

            await until(settled, timeout=40)
        finally:
            await runner.stop()
            await dialer.stop()
            await bridge.stop()
    engine.dispose()
    assert_nothing_injected(simulator)
    dialled = {a["Channel"] for a in simulator.actions_named("Originate")}
    good_cards = [f"N{i}{j}" for i in range(1, len(HOSTILE_NAMES) + 1) for j in range(2)]
    assert dialled == {f"PJSIP/{dialled_number(card)}@carrier" for card in good_cards}
    with sessions() as session:
        attempts = session.scalars(sa.select(DialAttempt)).all()
        targets = {t.campaign_id: t for t in session.scalars(sa.select(CampaignTarget))}
    for campaign_id in refused:
        mine = [a for a in attempts if a.campaign_id == campaign_id]
        assert [(a.outcome, a.reason_code) for a in mine] == [("failed", "unsafe")]
        assert targets[campaign_id].state == "failed"
    for campaign_id in good:
        assert {a.outcome for a in attempts if a.campaign_id == campaign_id} == {"answered"}
    for action in simulator.actions_named("Originate"):
        assert not any(name in str(action) for name in ("cmd|", "回访", "生日", "名名"))


@pytest.mark.parametrize("stored", ["+999123", "+8613900000001\r\nAction: Command", "abc", ""])
async def test_a_stored_number_that_is_not_e164_is_skipped_not_dialled(sqlite_url, stored):
    """A customer number written by another tool: the dial decision skips the target
    (``no_valid_number``) before any Originate is built, and the runner, with one slot only,
    goes on to the other campaign's calls."""
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    bad = add_campaign(sessions, "坏号码", ["B71"])
    with sessions.begin() as session:
        phone = session.scalars(
            sa.select(CustomerPhone).join(Customer).where(Customer.card_no == "B71")
        ).one()
        phone.number_e164 = stored
    add_campaign(sessions, "好号码", ["N81", "N82"])
    async with AmiSimulator(secret=SECRET, originate_speed=50) as simulator:
        config = AmiConfig(host="127.0.0.1", port=simulator.port, username="bridge", secret=SECRET)
        dialer = Dialer(config, max_concurrent=1, calls_per_second=50)
        await dialer.start()
        assert await dialer.wait_connected(5)
        runner = CampaignRunner(sessions, dialer, center_timezone=TZ, region="CN")
        await runner.start()
        try:
            await until(lambda: len(simulator.actions_named("Originate")) == 2, timeout=20)
        finally:
            await runner.stop()
            await dialer.stop()
    assert_nothing_injected(simulator)
    assert {a["Channel"] for a in simulator.actions_named("Originate")} == {
        f"PJSIP/{dialled_number(card)}@carrier" for card in ("N81", "N82")
    }
    with sessions() as session:
        target = session.scalars(
            sa.select(CampaignTarget).where(CampaignTarget.campaign_id == bad)
        ).one()
        attempts = session.scalars(sa.select(DialAttempt).where(DialAttempt.campaign_id == bad))
        assert (target.state, target.skip_reason, list(attempts)) == (
            "skipped",
            "no_valid_number",
            [],
        )
    engine.dispose()
