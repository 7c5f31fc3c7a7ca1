"""The agent's work on a call: services on SQLite and PostgreSQL, the /me API over the real app
and the AMI simulator on a real socket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from crm_bridge.accounts import users
from crm_bridge.accounts.auth import SESSION_COOKIE, SessionCodec
from crm_bridge.accounts.users import UserInputError
from crm_bridge.app import create_app
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.dialing import originate_click_to_call, outside_line_exten
from crm_bridge.calls.in_progress import agent_may_act, agents_of_calls_in_progress
from crm_bridge.calls.notes import link_customer, save_wrapup
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import (
    Call,
    CallNote,
    Complaint,
    Customer,
    CustomerOptOut,
    CustomerPhone,
    User,
)
from crm_bridge.pops.api import NOT_THE_CALLERS_NUMBER
from crm_bridge.pops.work import create_customer_for_call, open_complaint
from crm_bridge.settings import Settings
from telephony.ami_codec import UnsafeAmiValue
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

TOKEN = "test-token-0123456789"
SECRET_KEY = "a-test-secret-key-of-some-length"
AMI_SECRET = "s3cret-for-tests"
FAMILY = "+8613800138000"
HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "agent-password-1"
USERS = {  # name: (role, extensions)
    "wang": ("agent", ["1001"]),
    "li": ("agent", ["PJSIP/1002"]),
    "zhao": ("agent", []),
    "zhou": ("scheduler", ["1003"]),
}
LIVE_LINKEDID = "1795346712.954"
NEW_CALLER = "+8613900000001"
"""The caller of the logged call ``L-wang``, whom the archive does not know."""
"""The call of ``a_inbound_answered_1001``, which rings agent 1001."""


def count(session, model) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model))


def add_customer(session, card_no: str, name: str, *numbers: str) -> int:
    customer = Customer(card_no=card_no, name=name)
    customer.phones = [CustomerPhone(number_e164=n) for n in numbers]
    session.add(customer)
    session.flush()
    return customer.id


def tracked_call(name: str):
    tracker = CallTracker(server="pbx1")
    events = tracker.feed_all(load_trace(RECORDED_TRACES / "sip" / f"{name}.ami").events)
    (ended,) = [e.call for e in events if isinstance(e, CallEnded)]
    return ended


# ------------------------------------------------------------------------------- services


def test_linking_a_customer_notes_it_and_updates_a_call_already_logged(db_sessions):
    with db_sessions.begin() as session:
        zhang = add_customer(session, "C1", "张三", FAMILY)
        session.add(Call(linkedid="L-ended", server="pbx"))
    with db_sessions.begin() as session:
        link_customer(session, "L-ended", zhang, "wang")
        link_customer(session, "L-live", zhang, "wang")
    with db_sessions() as session:
        assert session.scalars(sa.select(Call.customer_id)).one() == zhang
        notes = {n.linkedid: n for n in session.scalars(sa.select(CallNote))}
        assert {k: (n.customer_id, n.agent_username) for k, n in notes.items()} == {
            "L-ended": (zhang, "wang"),
            "L-live": (zhang, "wang"),
        }
    with pytest.raises(UserInputError) as refused, db_sessions.begin() as session:
        link_customer(session, "L-other", 999, "wang")
    assert "No such customer" in refused.value.errors["customer_id"]
    with db_sessions() as session:
        assert count(session, CallNote) == 2


def test_the_call_log_takes_the_confirmed_customer_and_attaches_complaints(db_sessions):
    call = tracked_call("a_inbound_answered_1001")
    other = tracked_call("b_inbound_abandoned")
    with db_sessions.begin() as session:
        add_customer(session, "C1", "李四", FAMILY)
        li_xiao_si = add_customer(session, "C2", "李小四", FAMILY)
        link_customer(session, call.linkedid, li_xiao_si, "wang")
        complaint = open_complaint(session, li_xiao_si, "送货太慢", "wang", call.linkedid)
    log = CallLog(db_sessions, NumberRules("CN"))
    call_id = log.record(call)
    other_id = log.record(other)
    with db_sessions() as session:
        assert session.get(Call, call_id).customer_id == li_xiao_si
        assert session.get(Call, other_id).customer_id is None  # a family phone, unconfirmed
        assert session.get(Complaint, complaint).call_id == call_id


def test_a_new_caller_is_added_with_a_normalised_phone_and_a_card_number(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        new_id = create_customer_for_call(
            session,
            "L1",
            name=" 王五 ",
            gender="f",
            phone_raw="0086 139-0000-0001",
            card_no=None,
            agent="wang",
        )
    with sqlite_sessions() as session:
        customer = session.get(Customer, new_id)
        assert (customer.name, customer.gender) == ("王五", "F")
        assert customer.card_no.startswith("CB") and len(customer.card_no) == 16
        assert [(p.number_e164, p.kind) for p in customer.phones] == [("+8613900000001", "mobile")]
        note = session.scalars(sa.select(CallNote)).one()
        assert (note.linkedid, note.customer_id) == ("L1", new_id)


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"phone_raw": "12345678"}, "phone", "no area code"),
        ({"phone_raw": "138\r\nAction: Command"}, "phone", "not a phone number"),
        ({"card_no": "C1"}, "card_no", "already in use"),
        ({"name": "  "}, "name", "Name is required"),
        ({"gender": "X"}, "gender", "M or F"),
    ],
)
def test_a_new_caller_with_bad_input_writes_nothing(sqlite_sessions, fields, field, words):
    with sqlite_sessions.begin() as session:
        add_customer(session, "C1", "张三", FAMILY)
    given = {"name": "王五", "gender": None, "phone_raw": "13900000001", "card_no": "C2"}
    with pytest.raises(UserInputError) as refused, sqlite_sessions.begin() as session:
        create_customer_for_call(session, "L1", agent="wang", **(given | fields))
    assert list(refused.value.errors) == [field]
    assert words in refused.value.errors[field]
    with sqlite_sessions() as session:
        assert (count(session, Customer), count(session, CustomerPhone)) == (1, 1)
        assert count(session, CallNote) == 0


def test_wrapup_codes_and_notes_are_checked_and_saving_again_replaces(db_sessions):
    for code, note, field in (("chat", "", "code"), ("order", "长" * 2001, "note")):
        with pytest.raises(UserInputError) as refused, db_sessions.begin() as session:
            save_wrapup(session, "L1", code, note, "wang")
        assert list(refused.value.errors) == [field]
    assert "咨询" in refused_message(db_sessions, "chat")
    with db_sessions.begin() as session:
        save_wrapup(session, "L1", "inquiry", "问价格", "wang")
    with db_sessions.begin() as session:
        save_wrapup(session, "L1", "order", "  " + "长" * 2000 + " ", "li")
    with db_sessions() as session:
        note = session.scalars(sa.select(CallNote)).one()
        assert (note.wrapup_code, note.note, note.agent_username) == ("order", "长" * 2000, "li")
        assert note.customer_id is None


def refused_message(db_sessions, code: str) -> str:
    with pytest.raises(UserInputError) as refused, db_sessions.begin() as session:
        save_wrapup(session, "L1", code, None, "wang")
    return refused.value.errors["code"]


def test_a_complaint_is_open_without_handler_and_knows_its_call(db_sessions):
    with db_sessions.begin() as session:
        zhang = add_customer(session, "C1", "张三", FAMILY)
        session.add(Call(linkedid="L-ended", server="pbx"))
    with db_sessions.begin() as session:
        on_live = open_complaint(session, zhang, " 态度差 ", "wang", "L-live")
        on_ended = open_complaint(session, zhang, "送错货", "wang", "L-ended")
        apart = open_complaint(session, zhang, "退款慢", "wang")
    with db_sessions() as session:
        ended_call = session.scalars(sa.select(Call.id)).one()
        rows = {c.id: c for c in session.scalars(sa.select(Complaint))}
        assert (rows[on_live].content, rows[on_live].status) == ("态度差", "open")
        assert rows[on_live].handler is None
        assert (rows[on_live].linkedid, rows[on_live].call_id) == ("L-live", None)
        assert rows[on_ended].call_id == ended_call
        assert (rows[apart].linkedid, rows[apart].call_id) == (None, None)
    for customer_id, content in ((zhang, "  "), (999, "x"), (zhang, "长" * 2001)):
        with pytest.raises(UserInputError), db_sessions.begin() as session:
            open_complaint(session, customer_id, content, "wang", "L-live")
    with db_sessions() as session:
        assert count(session, Complaint) == 3


def test_an_agent_may_act_on_calls_that_rang_them_only(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        session.add(Call(linkedid="L-a", server="pbx", agent="1001"))
        session.add(Call(linkedid="L-t", server="pbx", agent="1002", transferred_to="1001"))
    live = {"L-live": {"1001", "1003"}}

    def rang(linkedid: str) -> set[str]:
        return live.get(linkedid, set())

    with sqlite_sessions() as session:
        for linkedid in ("L-a", "L-t", "L-live"):
            assert agent_may_act(session, linkedid, ["PJSIP/1001"], rang), linkedid
        assert agent_may_act(session, "L-live", ["Local/1003@from-internal"], rang)
        assert not agent_may_act(session, "L-a", ["1002", "1003"], rang)
        assert not agent_may_act(session, "L-live", ["1002"], rang)
        assert not agent_may_act(session, "nope", ["1001"], rang)
        assert not agent_may_act(session, "L-a", [], rang)
        assert not agent_may_act(session, "L-live", ["1001"], None)


def test_the_outside_line_extension_follows_the_internal_context(tmp_path):
    center = Settings(serving=False, data_dir=tmp_path)
    assert outside_line_exten("+8613800138000", center) == "913800138000"
    assert outside_line_exten("+861012345678", center) == "901012345678"
    assert outside_line_exten("+16502530000", center) == "90016502530000"
    other = Settings(serving=False, data_dir=tmp_path, outside_line_prefix="0")
    assert outside_line_exten("+8613800138000", other) == "013800138000"


# ------------------------------------------------------------------------------- the /me API


class Desk:
    """A running app on the simulator, with agents and customers seeded."""

    def __init__(self, app, simulator: AmiSimulator, stack: list) -> None:
        self.app = app
        self.simulator = simulator
        self._clients = stack

    @property
    def sessions(self):
        return self.app.state.runtime.sessions

    async def signed_in(self, username: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t")
        self._clients.append(client)
        await client.get("/login")
        token = SessionCodec(SECRET_KEY).decode(client.cookies[SESSION_COOKIE]).csrf
        form = {"username": username, "password": PASSWORD, "csrf_token": token}
        assert (await client.post("/login", data=form)).status_code == 303
        client.headers["X-CSRF-Token"] = self.csrf(client)
        return client

    @staticmethod
    def csrf(client: httpx.AsyncClient) -> str:
        return SessionCodec(SECRET_KEY).decode(client.cookies[SESSION_COOKIE]).csrf

    def count(self, model) -> int:
        with self.sessions() as session:
            return count(session, model)

    def customer_id(self, card_no: str) -> int:
        with self.sessions() as session:
            return session.scalar(sa.select(Customer.id).where(Customer.card_no == card_no))


def seed(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        for name, (role, extensions) in USERS.items():
            password_hash = HASHER.hash(PASSWORD)
            session.add(User(username=name, password_hash=password_hash, role=role,
                             extensions=extensions))  # fmt: skip
        add_customer(session, "C1", "李四", FAMILY)
        add_customer(session, "C2", "李小四", FAMILY, "+8613900000009")
        session.add(Call(linkedid="L-wang", server="default", direction="inbound", agent="1001",
                         caller=NEW_CALLER))  # fmt: skip
    engine.dispose()


async def wait_until(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@pytest.fixture
async def desk(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", HASHER)
    async with AmiSimulator(username="bridge", secret=AMI_SECRET) as simulator:
        simulator.originate_outcome = lambda _headers: None
        settings = Settings(
            data_dir=tmp_path,
            ami_host="127.0.0.1",
            ami_port=simulator.port,
            ami_username="bridge",
            ami_secret=AMI_SECRET,
            api_token=TOKEN,
            secret_key=SECRET_KEY,
        )
        seed(settings.database_url)
        app = create_app(settings)
        clients: list[httpx.AsyncClient] = []
        async with app.router.lifespan_context(app):
            await app.state.runtime.bridge.wait_connected(timeout=10)
            try:
                yield Desk(app, simulator, clients)
            finally:
                for client in clients:
                    await client.aclose()


async def test_an_agent_links_wraps_up_and_complains_on_their_call(desk):
    wang = await desk.signed_in("wang")
    li_xiao_si = desk.customer_id("C2")
    linked = await wang.post("/me/calls/L-wang/customer", json={"customer_id": li_xiao_si})
    assert linked.status_code == 200, linked.text
    assert linked.json() == {"linkedid": "L-wang", "customer_id": li_xiao_si}
    wrapup = await wang.post(
        "/me/calls/L-wang/wrapup", json={"code": "after_sales", "note": "换货"}
    )
    assert wrapup.json() == {
        "linkedid": "L-wang",
        "wrapup_code": "after_sales",
        "wrapup_label": "售后",
        "note": "换货",
    }
    complaint = await wang.post(
        "/me/complaints",
        json={"customer_id": li_xiao_si, "content": "快递慢", "linkedid": "L-wang"},
    )
    assert complaint.status_code == 200, complaint.text
    api = await wang.get("/api/calls", headers={"Authorization": f"Bearer {TOKEN}"})
    (call,) = api.json()["calls"]
    assert (call["customer_id"], call["wrapup_code"], call["note"]) == (
        li_xiao_si,
        "after_sales",
        "换货",
    )
    one = await wang.get(f"/api/calls/{call['id']}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert one.json()["wrapup_code"] == "after_sales"
    with desk.sessions() as session:
        row = session.get(Complaint, complaint.json()["complaint_id"])
        assert (row.call_id, row.status, row.handler) == (call["id"], "open", None)


async def test_a_new_caller_gets_a_card_and_bad_input_writes_nothing(desk):
    wang = await desk.signed_in("wang")
    body = {"name": "王五", "gender": "M", "phone": "139 0000 0001", "card_no": "V100"}
    created = await wang.post("/me/calls/L-wang/new-customer", json=body)
    assert created.status_code == 200, created.text
    card = created.json()["card"]
    assert (card["name"], card["card_no"], card["gender"]) == ("王五", "V100", "M")
    assert [p["number_e164"] for p in card["phones"]] == ["+8613900000001"]
    assert created.json()["customer_id"] == card["id"]
    customers, notes = desk.count(Customer), desk.count(CallNote)
    for bad, field in (({"phone": "110", "card_no": "V101"}, "phone"), ({}, "card_no")):
        refused = await wang.post("/me/calls/L-wang/new-customer", json=body | bad)
        assert refused.status_code == 400
        detail = refused.json()["detail"]
        assert list(detail["errors"]) == [field]
        assert "/" in detail["errors"][field]  # zh-CN / English
    wrong_shape = await wang.post("/me/calls/L-wang/new-customer", json={"gender": "M"})
    assert wrong_shape.status_code == 422
    bad_code = await wang.post("/me/calls/L-wang/wrapup", json={"code": "chat"})
    assert bad_code.status_code == 400 and "咨询" in bad_code.json()["detail"]["message"]
    assert (desk.count(Customer), desk.count(CallNote)) == (customers, notes)


async def test_an_agent_gets_404_for_calls_that_did_not_ring_them(desk):
    li = await desk.signed_in("li")
    customer = desk.customer_id("C1")
    for linkedid in ("L-wang", "no-such-call"):
        attempts = [
            ("customer", {"customer_id": customer}),
            ("new-customer", {"name": "王五", "phone": "13900000001"}),
            ("wrapup", {"code": "other", "note": "x"}),
        ]
        for route, body in attempts:
            response = await li.post(f"/me/calls/{linkedid}/{route}", json=body)
            assert response.status_code == 404, (linkedid, route)
            assert response.json()["detail"] == "没有这个通话 / No such call"
        complaint = {"customer_id": customer, "content": "x", "linkedid": linkedid}
        assert (await li.post("/me/complaints", json=complaint)).status_code == 404
    assert (desk.count(CallNote), desk.count(Complaint), desk.count(Customer)) == (0, 0, 2)


async def test_a_call_in_progress_is_for_the_agents_it_rang(desk):
    trace = load_trace(RECORDED_TRACES / "sip" / "a_inbound_answered_1001.ami")
    await desk.simulator.play_events(trace.events[:60], speed=0, renumber=False)
    bridge = desk.app.state.runtime.bridge
    await wait_until(lambda: "1001" in agents_of_calls_in_progress(bridge).get(LIVE_LINKEDID, ()))
    wang, li = await desk.signed_in("wang"), await desk.signed_in("li")
    path = f"/me/calls/{LIVE_LINKEDID}/wrapup"
    assert (await li.post(path, json={"code": "inquiry"})).status_code == 404
    assert (await wang.post(path, json={"code": "inquiry"})).status_code == 200
    with desk.sessions() as session:
        assert session.scalars(sa.select(CallNote.linkedid)).all() == [LIVE_LINKEDID]


async def test_csrf_and_role_are_enforced(desk):
    wang = await desk.signed_in("wang")
    body = {"code": "inquiry"}
    for token in (None, "forged"):
        headers = {"X-CSRF-Token": token} if token else {}
        if token is None:
            del wang.headers["X-CSRF-Token"]
        response = await wang.post("/me/calls/L-wang/wrapup", json=body, headers=headers)
        assert response.status_code == 403, token
        assert "CSRF" in response.json()["detail"]
    zhou = await desk.signed_in("zhou")
    assert (await zhou.post("/me/calls/L-wang/wrapup", json=body)).status_code == 403
    anonymous = httpx.AsyncClient(transport=httpx.ASGITransport(app=desk.app), base_url="http://t")
    async with anonymous:
        assert (await anonymous.post("/me/calls/L-wang/wrapup", json=body)).status_code == 401
    assert desk.count(CallNote) == 0


async def test_click_to_call_rings_the_agent_then_dials_out(desk):
    wang = await desk.signed_in("wang")
    customer = desk.customer_id("C2")
    response = await wang.post("/me/click-to-call", json={"customer_id": customer, "phone": FAMILY})
    assert response.status_code == 200, response.text
    channel_id = response.json()["channel_id"]
    (originate,) = desk.simulator.actions_named("Originate")
    assert originate["Channel"] == "PJSIP/1001"
    assert (originate["Context"], originate["Exten"], originate["Priority"]) == (
        "internal",
        "913800138000",
        "1",
    )
    assert originate["ChannelId"] == channel_id and len(channel_id) == 36
    assert originate["ActionID"] == f"c2c-{channel_id}"
    assert (originate["Async"], originate["Variable"]) == ("true", "CC_CLICK_TO_CALL=1")
    assert originate["CallerID"] == '"Click-to-call" <1001>'
    with desk.sessions() as session:
        note = session.scalars(sa.select(CallNote)).one()
        assert (note.linkedid, note.customer_id) == (channel_id, customer)


async def test_click_to_call_refuses_injection_and_numbers_not_the_customers(desk):
    wang = await desk.signed_in("wang")
    customer = desk.customer_id("C1")
    for phone in ("13800138000\r\nAction: Command\r\nCommand: core stop now", "13900000009"):
        response = await wang.post(
            "/me/click-to-call", json={"customer_id": customer, "phone": phone}
        )
        assert response.status_code == 400, phone
        assert "phone" in response.json()["detail"]["errors"]
    runtime = desk.app.state.runtime
    with pytest.raises(UnsafeAmiValue):  # the one encoder guards whatever gets this far
        await originate_click_to_call(
            runtime.bridge, "PJSIP/1001\r\nAction: Command", FAMILY, runtime.settings
        )
    assert desk.simulator.actions_named("Originate") == []
    assert desk.simulator.actions_named("Command") == []
    assert not any(b"Command" in raw for raw in desk.simulator.received_raw)


async def test_click_to_call_needs_an_extension_and_a_connected_pbx(desk):
    zhao = await desk.signed_in("zhao")
    body = {"customer_id": desk.customer_id("C1"), "phone": FAMILY}
    no_extension = await zhao.post("/me/click-to-call", json=body)
    assert no_extension.status_code == 409 and "extension" in no_extension.json()["detail"]
    wang = await desk.signed_in("wang")
    await desk.simulator.stop()
    bridge = desk.app.state.runtime.bridge
    await wait_until(lambda: bridge.status()[0]["state"] != "connected")
    down = await wang.post("/me/click-to-call", json=body)
    assert down.status_code == 503
    assert down.json()["detail"].startswith("电话系统未连接")
    assert desk.count(CallNote) == 0


async def test_the_clicked_call_is_logged_with_the_customer_the_agent_chose(desk):
    desk.simulator.originate_outcome = lambda _headers: "answered"
    desk.simulator.originate_speed = 100
    wang = await desk.signed_in("wang")
    li_xiao_si = desk.customer_id("C2")  # shares the number with C1: the lookup can't choose
    response = await wang.post(
        "/me/click-to-call", json={"customer_id": li_xiao_si, "phone": FAMILY}
    )
    channel_id = response.json()["channel_id"]

    def logged() -> bool:
        with desk.sessions() as session:
            return session.scalar(sa.select(Call.id).where(Call.linkedid == channel_id)) is not None

    await wait_until(logged)
    with desk.sessions() as session:
        call = session.scalars(sa.select(Call).where(Call.linkedid == channel_id)).one()
        assert call.customer_id == li_xiao_si
        assert call.offered_at <= datetime.now(UTC)


# ------------------------------------------------------------------------------- on the call


async def test_a_complaint_needs_a_call_of_mine_and_a_customer_on_it(desk):
    wang = await desk.signed_in("wang")
    li_si = desk.customer_id("C1")
    body = {"customer_id": li_si, "content": "快递慢"}
    assert (await wang.post("/me/complaints", json=body)).status_code == 422  # no call
    refused = await wang.post("/me/complaints", json=body | {"linkedid": "L-wang"})
    assert refused.status_code == 400
    assert list(refused.json()["detail"]["errors"]) == ["customer_id"]
    assert desk.count(Complaint) == 0
    await wang.post("/me/calls/L-wang/customer", json={"customer_id": li_si})
    taken = await wang.post("/me/complaints", json=body | {"linkedid": "L-wang"})
    assert taken.status_code == 200, taken.text


async def test_on_a_live_call_the_customers_of_the_callers_number_are_on_it(desk):
    trace = load_trace(RECORDED_TRACES / "sip" / "a_inbound_answered_1001.ami")
    await desk.simulator.play_events(trace.events[:60], speed=0, renumber=False)
    bridge = desk.app.state.runtime.bridge
    await wait_until(lambda: "1001" in agents_of_calls_in_progress(bridge).get(LIVE_LINKEDID, ()))
    wang = await desk.signed_in("wang")
    for card_no in ("C1", "C2"):  # a family phone: both are on the call
        body = {"customer_id": desk.customer_id(card_no), "content": "x", "linkedid": LIVE_LINKEDID}
        assert (await wang.post("/me/complaints", json=body)).status_code == 200, card_no
    stranger = {"name": "王五", "phone": "13900000002"}
    with desk.sessions.begin() as session:
        other = add_customer(session, "C3", "赵六", "+8613900000002")
    body = {"customer_id": other, "content": "x", "linkedid": LIVE_LINKEDID}
    assert (await wang.post("/me/complaints", json=body)).status_code == 400
    path = f"/me/calls/{LIVE_LINKEDID}/new-customer"
    assert (await wang.post(path, json=stranger)).status_code == 400


async def test_an_opt_out_needs_a_call_of_mine_and_a_customer_on_it(desk):
    wang, li = await desk.signed_in("wang"), await desk.signed_in("li")
    li_si = desk.customer_id("C1")
    body = {"customer_id": li_si, "note": "不要再打"}
    assert (await wang.post("/me/opt-out", json=body)).status_code == 422  # no call
    on_call = body | {"linkedid": "L-wang"}
    assert (await li.post("/me/opt-out", json=on_call)).status_code == 404  # not li's call
    assert (await wang.post("/me/opt-out", json=on_call)).status_code == 400  # not on it
    assert desk.count(CustomerOptOut) == 0
    await wang.post("/me/calls/L-wang/customer", json={"customer_id": li_si})
    assert (await wang.post("/me/opt-out", json=on_call)).status_code == 200
    assert desk.count(CustomerOptOut) == 1


async def test_a_new_caller_is_saved_with_the_calls_own_number_only(desk):
    wang = await desk.signed_in("wang")
    other = await wang.post("/me/calls/L-wang/new-customer",
                            json={"name": "王五", "phone": "139 0000 0002"})  # fmt: skip
    assert other.status_code == 400
    assert other.json()["detail"]["errors"] == {"phone": NOT_THE_CALLERS_NUMBER}
    assert desk.count(Customer) == 2
    taken = await wang.post("/me/calls/L-wang/new-customer", json={"name": "王五"})
    assert taken.status_code == 200, taken.text
    assert [p["number_e164"] for p in taken.json()["card"]["phones"]] == [NEW_CALLER]
    same = await wang.post("/me/calls/L-wang/new-customer",
                           json={"name": "王五", "phone": "0086 139-0000-0001"})  # fmt: skip
    assert same.status_code == 200
