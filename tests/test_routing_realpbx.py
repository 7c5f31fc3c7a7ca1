"""Routing by customer value on the PBX kit's real Asterisk, with real calls.

The dialplan (``callbridge-route``) asks the app's FastAGI server before ``Queue()``; the
kit's global ``CC_ROUTE_AGI`` is pointed at the app's port. What the tests look at: what
Asterisk did (``queue show``, the customer channel's dialplan steps and queue join, seen by
the kit's read-all ``bridge`` AMI account), who answered (the call log) and the label on the
agent's pop. With the FastAGI port closed, and with a server that accepts and never answers,
every call still reaches the queue and is answered; the time from the call's start (its
``Newchannel``) to its ``QueueCallerJoin``, both stamped by Asterisk, is printed, as are the
FastAGI answer times of the calls answered (p50/p99). Nothing is asserted on time.
"""

from __future__ import annotations

import asyncio
import statistics
from datetime import UTC, datetime

import pytest
from realpbx_site import WAIT, ZHANG_SAN_RAW, api, frame_of_state, kit_site, logged_call
from test_pops import CHEAP_ARGON2

from crm_bridge.accounts import users
from crm_bridge.db.models import (
    AccountManager,
    Complaint,
    Customer,
    CustomerPhone,
    RoutingSettings,
    RoutingTier,
)

pytestmark = pytest.mark.realpbx

MANAGED_RAW = "13800138011"
COMPLAINING_RAW = "13800138022"
UNKNOWN_RAW = "13700000000"
LI = "Local/1002@agents/n"
WANG = "Local/1001@agents/n"
QUEUE_DELAYS: dict[str, list[float]] = {}


def seed_routing(site) -> None:
    """张三 (金卡) gets priority 10; 李四 has li (1002) for account manager; 王五 has an open
    complaint and goes to the senior queue (li only, dialplans/queues.conf)."""
    with site.sessions().begin() as session:
        session.add(RoutingTier(tier="金卡", priority=10))
        session.add(RoutingSettings(id=1, high_value_cents=None, high_value_priority=5,
                                    manager_ring_seconds=10, complaint_queue="senior"))  # fmt: skip
        li_si = Customer(card_no="C0011", name="李四",
                         phones=[CustomerPhone(number_e164="+86" + MANAGED_RAW)])  # fmt: skip
        wang_wu = Customer(card_no="C0022", name="王五",
                           phones=[CustomerPhone(number_e164="+86" + COMPLAINING_RAW)])  # fmt: skip
        session.add_all([li_si, wang_wu])
        session.flush()
        session.add(AccountManager(customer_id=li_si.id, extension="1002"))
        session.add(Complaint(customer_id=wang_wu.id, received_at=datetime.now(UTC),
                              content="送货太慢"))  # fmt: skip
    site.app.state.runtime.routing.reload_rules()


async def kit(pbx_commands, *args: str) -> str:
    """A kit command on a thread: the app shares this test's event loop, and its FastAGI server
    must answer while ``call-in --wait`` waits for the call to end."""
    return await asyncio.to_thread(pbx_commands, *args, timeout=90)


def point_dialplan_at(pbx_commands, port: int) -> None:
    pbx_commands("rx", "pbx", f"dialplan set global CC_ROUTE_AGI 127.0.0.1:{port}")


async def until(predicate, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        states = running.app.state.runtime.agent_states
        await until(lambda: states.link.board.of_interface(WANG)
                    and states.link.board.of_interface(LI))  # fmt: skip
        seed_routing(running)
        point_dialplan_at(pbx_commands, running.app.state.runtime.routing.server.port)
        yield running


def customer_channel(heard: list[dict], number: str) -> str:
    """The Uniqueid of the last inbound call from ``number``."""
    ids = [e["Uniqueid"] for e in heard if e.get("Event") == "Newchannel"
           and e.get("CallerIDNum") == number and e.get("Context") == "from-customers"]  # fmt: skip
    assert ids, f"no inbound channel from {number}"
    return ids[-1]


def steps_of(heard: list[dict], uniqueid: str) -> list[tuple[str, str]]:
    return [(e["Application"], e.get("AppData", "")) for e in heard
            if e.get("Event") == "Newexten" and e.get("Uniqueid") == uniqueid]  # fmt: skip


async def queue_join(kit_bridge, number: str, case: str) -> dict:
    """The customer channel's QueueCallerJoin, once heard; notes the seconds from its
    Newchannel to it under ``case``."""
    heard = kit_bridge.heard
    await until(lambda: any(e.get("Event") == "Newchannel" and e.get("CallerIDNum") == number
                            for e in heard))  # fmt: skip
    uniqueid = customer_channel(heard, number)
    await until(lambda: any(e.get("Event") == "QueueCallerJoin" and e.get("Uniqueid") == uniqueid
                            for e in heard))  # fmt: skip
    start = next(e for e in heard if e.get("Event") == "Newchannel" and e["Uniqueid"] == uniqueid)
    join = next(e for e in heard
                if e.get("Event") == "QueueCallerJoin" and e["Uniqueid"] == uniqueid)  # fmt: skip
    QUEUE_DELAYS.setdefault(case, []).append(float(join["Timestamp"]) - float(start["Timestamp"]))
    return join


def report(site) -> None:
    """The figures of this test, printed (``-s`` shows them)."""
    answers = sorted(s * 1000 for s in site.app.state.runtime.routing.answer_seconds)
    if answers:
        p99 = answers[min(len(answers) - 1, round(0.99 * (len(answers) - 1)))]
        print(f"FastAGI answer on real calls: n={len(answers)} "
              f"p50={statistics.median(answers):.2f} ms p99={p99:.2f} ms")  # fmt: skip
    for case, delays in QUEUE_DELAYS.items():
        print(f"call start -> Queue() ({case}): " + ", ".join(f"{d * 1000:.0f} ms" for d in delays))


async def test_a_vip_caller_is_queued_with_priority_and_the_pop_says_so(site, pbx_commands,
                                                                         kit_bridge):  # fmt: skip
    pbx_commands("agent", "1001", "--behaviour", "noanswer")
    pbx_commands("agent", "1002", "--behaviour", "noanswer")
    async with site.pops("wang") as ws:
        await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "8")
        join = await queue_join(kit_bridge, ZHANG_SAN_RAW, "VIP, bridge answering")
        assert join["Queue"] == "support"
        shown = await kit(pbx_commands, "rx", "pbx", "queue show support")
        assert "prio: 10" in shown, shown
        frame = await frame_of_state(ws, "ringing")
        assert frame["call"]["route"] == "VIP · 优先接入"
    report(site)


async def test_the_account_manager_rings_first_when_ready(site, pbx_commands, kit_bridge):
    async with site.pops("li") as ws:
        await kit(pbx_commands, "call-in", "--from", MANAGED_RAW, "--hold", "4", "--wait")
        call = await logged_call(site.origin, caller="+86" + MANAGED_RAW)
        assert call["agent"] == "1002" and call["disposition"] == "answered"
        frame = await frame_of_state(ws, "ringing")
        assert frame["call"]["route"] == "专属客户经理 1002"
    steps = steps_of(kit_bridge.heard, customer_channel(kit_bridge.heard, MANAGED_RAW))
    assert ("Dial", "Local/1002@agents/n,10,g") in steps  # g: on to the survey after it
    assert not any(app == "Queue" for app, _ in steps)  # answered before the queue
    report(site)


async def test_a_paused_account_manager_is_not_rung_first(site, pbx_commands, kit_bridge):
    states = site.app.state.runtime.agent_states
    await states.pause("1002", "会议")
    await until(lambda: str(states.of("1002").status.state) == "paused")
    try:
        await kit(pbx_commands, "call-in", "--from", MANAGED_RAW, "--hold", "4", "--wait")
        call = await logged_call(site.origin, caller="+86" + MANAGED_RAW)
        assert call["agent"] == "1001" and call["queue"] == "support"
    finally:
        await states.ready("1002")
    steps = steps_of(kit_bridge.heard, customer_channel(kit_bridge.heard, MANAGED_RAW))
    assert not any(app == "Dial" for app, _ in steps)


async def test_an_open_complaint_goes_to_the_senior_agents(site, pbx_commands, kit_bridge):
    async with site.pops("li") as ws:
        await kit(pbx_commands, "call-in", "--from", COMPLAINING_RAW, "--hold", "4", "--wait")
        call = await logged_call(site.origin, caller="+86" + COMPLAINING_RAW)
        assert call["queue"] == "senior" and call["agent"] == "1002"
        frame = await frame_of_state(ws, "ringing")
        assert frame["call"]["route"] == "投诉跟进"
    join = await queue_join(kit_bridge, COMPLAINING_RAW, "complaint, bridge answering")
    assert join["Queue"] == "senior"


async def test_an_unknown_caller_gets_the_plain_queue(site, pbx_commands, kit_bridge):
    answered_before = site.app.state.runtime.routing.server.counts.answered
    async with site.pops("wang") as wang_ws, site.pops("li") as li_ws:
        await kit(pbx_commands, "call-in", "--from", UNKNOWN_RAW, "--hold", "4", "--wait")
        call = await logged_call(site.origin, caller="+86" + UNKNOWN_RAW)
        assert call["queue"] == "support" and call["disposition"] == "answered"
        assert await logged_call(site.origin) == call  # the routing's Local channel is no call
        frame = await frame_of_state(wang_ws if call["agent"] == "1001" else li_ws, "ringing")
        assert frame["call"]["route"] is None
    await queue_join(kit_bridge, UNKNOWN_RAW, "unknown caller, bridge answering")
    assert site.app.state.runtime.routing.server.counts.answered == answered_before + 1
    steps = steps_of(kit_bridge.heard, customer_channel(kit_bridge.heard, UNKNOWN_RAW))
    assert not any(app == "Dial" for app, _ in steps)
    report(site)


CALLS_AWAY = 2
"""Calls placed one after the other with the bridge away; the caller holds on long enough for
an agent out of the queue's wrap-up time (10 s) to answer."""


async def calls_reach_the_queue(site, pbx_commands, kit_bridge, case: str) -> None:
    for _ in range(CALLS_AWAY):
        await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "25", "--wait")
        await queue_join(kit_bridge, ZHANG_SAN_RAW, case)
    calls = await all_calls(site, "+86" + ZHANG_SAN_RAW, CALLS_AWAY)
    assert [(c["disposition"], c["queue"]) for c in calls] == [("answered", "support")] * CALLS_AWAY
    assert all(c["agent"] in ("1001", "1002") for c in calls)


async def test_with_the_fastagi_port_closed_the_call_still_reaches_the_queue(
    site, pbx_commands, kit_bridge
):
    await site.app.state.runtime.routing.server.stop()  # the bridge's FastAGI port is closed
    await calls_reach_the_queue(site, pbx_commands, kit_bridge, "FastAGI port closed")
    report(site)


async def test_a_bridge_that_accepts_and_never_answers_delays_nothing_for_long(
    site, pbx_commands, kit_bridge
):
    held: list[asyncio.StreamWriter] = []

    async def hold(_reader, writer):
        held.append(writer)  # accepted; never a word

    mute = await asyncio.start_server(hold, "127.0.0.1", 0)
    point_dialplan_at(pbx_commands, mute.sockets[0].getsockname()[1])
    try:
        await calls_reach_the_queue(site, pbx_commands, kit_bridge,
                                    "FastAGI accepts, never answers")  # fmt: skip
        # Asterisk did connect each time: before the queue, and once the agent hung up to ask
        # whether to survey (not answered either: no survey, the call ends 0.5 s later).
        assert len(held) == 2 * CALLS_AWAY
    finally:
        for writer in held:
            writer.close()
        mute.close()
    report(site)


async def all_calls(site, caller: str, count: int) -> list[dict]:
    """The ``count`` logged calls from ``caller``, oldest first, once all have ended."""
    async with api(site) as client:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while True:
            calls = (await client.get("/api/calls", params={"caller": caller})).json()["calls"]
            if len(calls) == count and all(c["ended_at"] for c in calls):
                return sorted(calls, key=lambda c: c["offered_at"])
            assert loop.time() < deadline, f"{len(calls)} calls logged, not {count}"
            await asyncio.sleep(0.2)


REAL_CALLS = 20


async def test_the_answer_time_on_real_calls(site, pbx_commands, kit_bridge):
    """Short real calls from a VIP, a customer with a complaint and an unknown caller, one after
    another: every one is answered by the FastAGI server and joins its queue. The answer times
    (accept to last reply, on the server) and call start to Queue() are printed."""
    pbx_commands("agent", "1001", "--behaviour", "noanswer")
    pbx_commands("agent", "1002", "--behaviour", "noanswer")
    callers = [ZHANG_SAN_RAW, COMPLAINING_RAW, UNKNOWN_RAW]
    for i in range(REAL_CALLS):
        number = callers[i % len(callers)]
        await kit(pbx_commands, "call-in", "--from", number, "--hold", "1", "--wait")
        join = await queue_join(kit_bridge, number, "20 short real calls")
        assert join["Queue"] == ("senior" if number == COMPLAINING_RAW else "support")
    routing = site.app.state.runtime.routing
    assert routing.server.counts.answered == REAL_CALLS and routing.server.counts.failed == 0
    report(site)
