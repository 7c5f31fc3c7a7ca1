"""Screen pops past one machine (crm_bridge/pops/relay.py): the payload of every domain event,
and two instances of the app on one PostgreSQL database, each under uvicorn on its own port,
each with its own AMI simulator. Instance A's simulator replays the real traces; an agent
signed in on instance B gets the pops.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from test_pops import (
    AMI_SECRET,
    CHEAP_ARGON2,
    FRAME_WAIT,
    Site,
    call_frames,
    next_frame,
    seed,
    served,
    trace,
    wait_for,
)

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.calls.call_log import CallLog
from crm_bridge.db.models import Call
from crm_bridge.pops.relay import (
    APPLICATION_NAME,
    CHANNEL,
    LIVE_SILENCE,
    PopPublisher,
    libpq_conninfo,
)
from crm_bridge.pops.relay_payload import (
    AGENTS_RUNG_KEPT,
    MAX_PAYLOAD_BYTES,
    PayloadTooLong,
    decode,
    encode,
    encode_live,
)
from crm_bridge.settings import ConfigurationError, Settings
from telephony.call_events import AgentRinging, CallOffered, CallRecord, DomainEvent
from telephony.call_tracker import CallTracker
from telephony.simulator import AmiSimulator

TRACES_OF_EVERY_EVENT = (
    "a_inbound_answered_1001",
    "b_inbound_abandoned",
    "c_inbound_1001_noanswer_1002_answers",
    "d_outbound_return_visit_answered",
    "h1_blind_transfer_1001_to_1002",
)


def domain_events(name: str) -> list[DomainEvent]:
    """What the call tracker emits for a recorded trace."""
    return CallTracker("default").feed_all(trace(name).events)


# ------------------------------------------------------------------------------- payload


def test_every_domain_event_of_the_real_traces_survives_the_payload():
    events = [event for name in TRACES_OF_EVERY_EVENT for event in domain_events(name)]
    assert {type(e).__name__ for e in events} == {
        "CallOffered",
        "AgentRinging",
        "AgentRingStopped",
        "CallAnswered",
        "CallTransferred",
        "RecordingStarted",
        "CallEnded",
    }
    for event in events:
        payload = encode(event, "origin-a", 1_795_000_000.25)
        assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
        relayed = decode(payload)
        assert (relayed.origin, relayed.received_at) == ("origin-a", 1_795_000_000.25)
        assert relayed.event == event and type(relayed.event) is type(event)


def test_a_call_that_rang_hundreds_keeps_its_last_agents_and_a_huge_one_is_refused():
    ringing = next(e for e in domain_events("a_inbound_answered_1001") if type(e) is AgentRinging)
    agents = [f"Local/{n}@agents/n" for n in range(2000)]
    crowded = replace(ringing, call=replace(ringing.call, agents_rung=agents))
    payload = encode(crowded, "origin-a", None)
    assert len(payload.encode()) <= MAX_PAYLOAD_BYTES
    relayed = decode(payload).event
    assert relayed.call.agents_rung == agents[-AGENTS_RUNG_KEPT:]
    assert relayed == replace(crowded, call=relayed.call)

    named = replace(ringing, call=replace(ringing.call, caller_name="张" * 3000))
    with pytest.raises(PayloadTooLong):
        encode(named, "origin-a", None)


def test_the_list_of_calls_in_flight_comes_in_parts_that_fit():
    linkedids = {f"1795346712.{n}" for n in range(2000)}
    payloads = encode_live("origin-a", 7, linkedids)
    assert len(payloads) > 1
    assert all(len(p.encode()) <= MAX_PAYLOAD_BYTES for p in payloads)
    parts = [decode(p) for p in payloads]
    assert {(p.origin, p.seq, p.parts) for p in parts} == {("origin-a", 7, len(payloads))}
    assert [p.part for p in parts] == list(range(len(payloads)))
    assert frozenset().union(*(p.linkedids for p in parts)) == linkedids
    (nothing,) = [decode(p) for p in encode_live("origin-a", 8, [])]
    assert (nothing.parts, nothing.linkedids) == (1, frozenset())


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        '{"v": 2, "o": "x", "rx": null, "t": "CallEnded", "e": {}}',
        '{"v": 1, "o": "x", "rx": null, "t": "Nothing", "e": {}}',
        '{"v": 1, "o": "x", "rx": null, "t": "CallEnded", "e": {"at": 1.0}}',
        '{"v": 1, "o": 7, "rx": null, "t": "CallEnded", "e": {"call": {"linkedid": "1",'
        ' "server": "s"}, "at": 1.0}}',
        '{"v": 1, "o": "x", "seq": 1, "part": 1, "parts": 1, "live": []}',
        '{"v": 1, "o": "x", "seq": 1, "part": 0, "parts": 1, "live": [3]}',
    ],
)
def test_anything_else_is_refused_as_malformed(payload):
    with pytest.raises(ValueError, match="malformed|version"):
        decode(payload)


async def test_with_postgresql_away_events_are_dropped_and_counted_never_queued():
    port = port_nobody_listens_on()
    publisher = PopPublisher(f"postgresql://postgres@127.0.0.1:{port}/test", "a", lambda: None)
    publisher.start()

    async def down() -> bool:
        return publisher.down

    try:
        await wait_for(down)
        for event in domain_events("a_inbound_answered_1001"):
            publisher.on_event(event)  # returns at once: the bridge is never held up
    finally:
        await publisher.stop()
    assert publisher.dropped == len(domain_events("a_inbound_answered_1001"))
    assert publisher.published == 0 and publisher.connections_made == 0


def test_the_relay_is_on_exactly_with_postgresql_unless_told(tmp_path):
    pg, sqlite = "postgresql://u@db/callbridge", f"sqlite:///{tmp_path}/c.db"
    assert Settings(serving=False, database_url=pg).pop_relay_enabled
    assert not Settings(serving=False, database_url=pg, pop_relay=False).pop_relay_enabled
    assert not Settings(serving=False, database_url=sqlite).pop_relay_enabled
    with pytest.raises(ConfigurationError, match="pop_relay"):
        Settings(serving=False, database_url=sqlite, pop_relay=True)


# ------------------------------------------------------------------------------- two instances


@dataclass
class Pair:
    a: Site
    b: Site
    pg_url: str


def instance_settings(data_dir: Path, pg_url: str, ami_port: int) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=pg_url,
        ami_host="127.0.0.1",
        ami_port=ami_port,
        ami_username="bridge",
        ami_secret=AMI_SECRET,
        api_token="test-token-0123456789",
        secret_key="a-test-secret-key-of-some-length",
    )


async def start_instance(stack: AsyncExitStack, data_dir: Path, pg_url: str) -> Site:
    """An instance of the app on ``pg_url`` with its own simulator, both closed by ``stack``."""
    simulator = await stack.enter_async_context(AmiSimulator(username="bridge", secret=AMI_SECRET))
    settings = instance_settings(data_dir, pg_url, simulator.port)
    app = create_app(settings)
    address = await stack.enter_async_context(served(app))
    runtime = app.state.runtime
    assert await runtime.bridge.wait_connected(timeout=FRAME_WAIT)
    assert runtime.pop_relay is not None
    assert await runtime.pop_relay.wait_connected(timeout=FRAME_WAIT)
    return Site(simulator, app, address, settings)


@pytest.fixture
async def pair(pg_url, tmp_path, monkeypatch) -> AsyncIterator[Pair]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    seed(pg_url)
    async with AsyncExitStack() as stack:
        a = await start_instance(stack, tmp_path / "a", pg_url)
        b = await start_instance(stack, tmp_path / "b", pg_url)
        yield Pair(a, b, pg_url)


def port_nobody_listens_on() -> int:
    """A loopback port that was free a moment ago (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def calls_logged(site: Site, linkedid: str) -> int:
    with site.sessions()() as session:
        return session.scalar(select(func.count()).where(Call.linkedid == linkedid))


@pytest.fixture
def writes(monkeypatch) -> Counter[str]:
    """Linkedid -> how many times any instance of this process wrote the call to the call log
    (the real writer, counted: its insert ignores a duplicate, so rows alone cannot tell)."""
    counts: Counter[str] = Counter()
    record = CallLog.record

    def counted(self: CallLog, call: CallRecord) -> int:
        counts[call.linkedid] += 1
        return record(self, call)

    monkeypatch.setattr(CallLog, "record", counted)
    return counts


@pytest.mark.postgres
async def test_an_agent_on_the_other_instance_gets_the_pop_and_the_call_is_logged_once(
    pair, writes
):
    async with pair.b.pops("wang") as wang, pair.b.pops("li") as li:
        await pair.a.play("a_inbound_answered_1001")
        pop, answered, ended = await call_frames(wang)
        assert pop["state"] == "ringing" and pop["call"]["caller"] == "+8613800138000"
        assert pop["lookup"]["kind"] == "known"
        assert [card["name"] for card in pop["lookup"]["cards"]] == ["张三"]
        # A's AMI arrival, carried as wall-clock time, is on B's monotonic clock in B's frame
        now = time.monotonic()
        assert all(now - FRAME_WAIT < f["ami_rx"] <= now for f in (pop, answered, ended))
        assert answered == answered | {"state": "answered", "by_agent": "1001", "mine": True}
        assert ended["state"] == "ended" and ended["disposition"] == "answered"

        # 1002 was not rung by call a: li's first frame is the pop of call c, relayed after
        # every frame of call a (one publisher connection keeps the order).
        await pair.a.play("c_inbound_1001_noanswer_1002_answers")
        li_pop = await next_frame(li)
        assert li_pop["type"] == "pop" and li_pop["linkedid"] != pop["linkedid"]
        await call_frames(wang)

    for site in (pair.a, pair.b):
        await site.app.state.runtime.bridge.drain()
    assert writes == {pop["linkedid"]: 1, li_pop["linkedid"]: 1}
    assert calls_logged(pair.a, pop["linkedid"]) == 1
    assert pair.b.app.state.runtime.pop_relay.publisher.published == 0


@pytest.mark.postgres
async def test_the_relay_comes_back_after_its_backends_are_terminated(pair):
    relays = [site.app.state.runtime.pop_relay for site in (pair.a, pair.b)]
    emitted: list[DomainEvent] = []
    pair.a.app.state.runtime.bridge.subscribe(emitted.append)
    async with pair.b.pops("wang") as wang:
        with psycopg.connect(libpq_conninfo(pair.pg_url), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = %s AND datname = current_database()",
                (APPLICATION_NAME,),
            ).fetchall()
        assert len(killed) == 4  # a publisher and a listener on each instance

        async def listeners_back() -> bool:
            return all(
                r.listener.connections_made == 2 and r.listener.connected.is_set() for r in relays
            )

        await wait_for(listeners_back)
        await pair.a.play("a_inbound_answered_1001")
        pop, _answered, ended = await call_frames(wang)
        assert [card["name"] for card in pop["lookup"]["cards"]] == ["张三"]
        assert ended["state"] == "ended"
    publisher = relays[0].publisher
    assert publisher.connections_made == 2 and publisher.dropped == 0

    async def all_published() -> bool:
        return publisher.published == len(emitted)

    # the event whose send met the dead connection was sent again: none was lost
    await wait_for(all_published)
    assert relays[1].listener.received == len(emitted)


@pytest.mark.postgres
async def test_a_card_whose_end_was_not_heard_is_ended_by_the_next_list_of_calls(pair):
    """B stops listening while the call rings and listens again once it is over: the answer
    and the end are lost, and A's next list of its calls in flight ends the card."""
    listener = pair.b.app.state.runtime.pop_relay.listener
    bridge_a = pair.a.app.state.runtime.bridge
    async with pair.b.pops("wang") as wang:
        playing = asyncio.create_task(
            pair.a.simulator.play(trace("a_inbound_answered_1001"), speed=1, renumber=True)
        )
        pop = await next_frame(wang)
        assert pop["type"] == "pop" and pop["state"] == "ringing"
        await listener.stop()  # the trace rings for 2 s before it is answered
        await playing

        async def over_on_a() -> bool:
            return bridge_a.status()[0]["calls_in_flight"] == 0

        await wait_for(over_on_a)
        listener.start()
        await asyncio.wait_for(listener.connected.wait(), FRAME_WAIT)
        ended = await next_frame(wang)
        assert ended == ended | {"type": "update", "linkedid": pop["linkedid"], "state": "ended"}
    assert listener.ended_unheard == 1 and listener.calls_held == 0


@pytest.mark.postgres
async def test_the_calls_of_an_instance_that_fell_silent_are_ended(pair):
    """An instance that published a ring and was never heard again (it stopped for good)."""
    listener = pair.b.app.state.runtime.pop_relay.listener
    hub = pair.b.app.state.runtime.pops
    events = domain_events("a_inbound_answered_1001")
    offered, ringing = (
        next(e for e in events if type(e) is t) for t in (CallOffered, AgentRinging)
    )
    async with pair.b.pops("wang") as wang:
        with psycopg.connect(libpq_conninfo(pair.pg_url), autocommit=True) as gone:
            for event in (offered, ringing):
                gone.execute("SELECT pg_notify(%s, %s)", (CHANNEL, encode(event, "gone", None)))
        pop = await next_frame(wang)
        assert pop["linkedid"] == ringing.call.linkedid
        assert [card["name"] for card in pop["lookup"]["cards"]] == ["张三"]

        listener.end_silent_instances(now=time.monotonic() + LIVE_SILENCE + 1)
        ended = await next_frame(wang)
        assert ended == ended | {"type": "update", "linkedid": pop["linkedid"], "state": "ended"}

    async def let_go() -> bool:
        return hub.calls_held == 0

    await wait_for(let_go)
    assert listener.ended_unheard == 1


@pytest.mark.postgres
async def test_metrics_show_the_relay_at_work(pair):
    async with pair.b.pops("wang") as wang:
        await pair.a.play("a_inbound_answered_1001")
        await call_frames(wang)
    a_relay = pair.a.app.state.runtime.pop_relay
    a, b = await relay_metrics(pair.a), await relay_metrics(pair.b)
    assert a[("callbridge_pop_relay_connected", "out")] == 1.0
    assert b[("callbridge_pop_relay_connected", "in")] == 1.0
    assert a[("callbridge_pop_relay_sent_events_total", "published")] == a_relay.publisher.published
    assert a_relay.publisher.published > 0
    assert b[("callbridge_pop_relay_heard_events_total", "received")] >= 3  # ring, answer, end
    assert b[("callbridge_pop_relay_heard_events_total", "malformed")] == 0


async def relay_metrics(site: Site) -> dict[tuple[str, str], float]:
    """The relay's samples of ``/metrics``, by name and label value."""
    headers = {"Authorization": f"Bearer {site.settings.api_token.get_secret_value()}"}
    async with httpx.AsyncClient(base_url=site.origin) as client:
        response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200
    return {
        (sample.name, next(iter(sample.labels.values()))): sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name.startswith("callbridge_pop_relay")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
