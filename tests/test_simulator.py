"""The AMI simulator (telephony.simulator) and trace loading (telephony.trace_files), driven by
plain socket clients on 127.0.0.1."""

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from telephony.ami_codec import AmiFramer, encode_action
from telephony.call_events import CallAnswered, CallEnded, Direction
from telephony.call_tracker import CallTracker
from telephony.simulator import AGENT_FIRST_TRACE, AmiSimulator, with_caller
from telephony.trace_files import (
    ID_VALUE,
    RECORDED_TRACES,
    SESSION_EVENTS,
    load_trace,
    read_frames,
    renumber,
    replay_times,
)

SIP = RECORDED_TRACES / "sip"
SECRET = "sim-test-secret"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


class Client:
    """A bare AMI client: raw bytes in, frames out, nothing clever."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = AmiFramer()
        self.raw = bytearray()
        self.frames: list[dict[str, str]] = []
        self.eof = False

    @classmethod
    async def open(cls, port: int) -> "Client":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def send(self, action: str, **headers: str) -> None:
        self.writer.write(encode_action(action, headers))

    async def read_once(self) -> None:
        data = await self.reader.read(65536)
        self.eof = not data
        self.raw += data
        self.frames += self.framer.feed(data)

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                if self.eof:
                    raise EOFError("the simulator closed the connection")
                await self.read_once()

    async def answer(self, action_id: str) -> dict[str, str]:
        def found() -> bool:
            return any(f.get("ActionID") == action_id and "Response" in f for f in self.frames)

        await self.until(found)
        return next(f for f in self.frames if f.get("ActionID") == action_id and "Response" in f)

    async def login(self, secret: str = SECRET, events: str = "on") -> dict[str, str]:
        self.send("Login", ActionID="login-1", Username="bridge", Secret=secret, Events=events)
        return await self.answer("login-1")

    def events(self, name: str | None = None) -> list[dict[str, str]]:
        return [f for f in self.frames if "Event" in f and name in (None, f["Event"])]

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    async with AmiSimulator(secret=SECRET, login_failure_delay=0.05, originate_speed=0) as s:
        yield s


@pytest.fixture
async def client(sim: AmiSimulator) -> AsyncIterator[Client]:
    c = await Client.open(sim.port)
    assert (await c.login())["Response"] == "Success"
    await c.until(lambda: bool(c.events("FullyBooted")))
    yield c
    c.close()


def event_frames_of(path: Path) -> bytes:
    """The exact bytes of a trace's replayable event frames, as written in the file."""
    body = path.read_bytes().split(b"\r\n", 1)[1]
    frames = [f for f in body.split(b"\r\n\r\n") if f.startswith(b"Event: ")]
    keep = [f for f in frames if f.split(b"\r\n", 1)[0][7:].decode() not in SESSION_EVENTS]
    return b"".join(f + b"\r\n\r\n" for f in keep)


def mid_call(name: str = "a_inbound_answered_1001") -> tuple[list[dict[str, str]], list[str]]:
    """A trace's call events while the call is talking (before its first BridgeLeave), and
    the Uniqueids of the channels then alive."""
    events = load_trace(SIP / f"{name}.ami").call_events
    partial = events[: next(i for i, e in enumerate(events) if e["Event"] == "BridgeLeave")]
    alive = [e["Uniqueid"] for e in partial if e["Event"] == "Newchannel"]
    return partial, alive


# --------------------------------------------------------------------------- session basics


async def test_the_banner_comes_first_with_no_blank_line(sim: AmiSimulator) -> None:
    c = await Client.open(sim.port)
    await c.until(lambda: len(c.raw) >= len(BANNER))
    assert bytes(c.raw) == BANNER
    assert c.framer.banner == "Asterisk Call Manager/11.0.0"
    c.close()


async def test_login_is_answered_like_asterisk_then_fully_booted(client: Client) -> None:
    recorded = (SIP / "e1_outbound_busy.ami").read_bytes()
    expected_login = recorded[len(BANNER) :].split(b"\r\n\r\n")[0].replace(b"bridge-1", b"login-1")
    assert bytes(client.raw[len(BANNER) :]).startswith(expected_login + b"\r\n\r\n")
    booted = client.events("FullyBooted")[0]
    _, trace_frames = read_frames(SIP / "e1_outbound_busy.ami")
    assert list(booted) == list(next(f for f in trace_frames if f.get("Event") == "FullyBooted"))
    assert booted["Privilege"] == "system,all"


async def test_a_wrong_secret_gets_the_recorded_answer_then_the_socket_closes(
    sim: AmiSimulator,
) -> None:
    c = await Client.open(sim.port)
    c.send("Login", ActionID="bad-1", Username="bridge", Secret="wrong")
    await c.until(lambda: c.eof)
    assert bytes(c.raw) == (SIP / "g1_login_wrong_secret.ami").read_bytes()
    assert sim.logins == 0
    c.close()


async def test_before_login_only_login_is_served(sim: AmiSimulator) -> None:
    c = await Client.open(sim.port)
    c.send("CoreShowChannels", ActionID="x-1")
    answer = await c.answer("x-1")
    assert (answer["Response"], answer["Message"]) == ("Error", "Permission denied")
    c.close()


async def test_unknown_actions_ping_and_logoff(client: Client) -> None:
    client.send("Bogus", ActionID="b-1")
    client.send("Ping", ActionID="p-1")
    assert (await client.answer("b-1"))["Message"] == "Invalid/unknown command"
    pong = await client.answer("p-1")
    assert pong["Response"] == "Success" and pong["Ping"] == "Pong"
    assert abs(float(pong["Timestamp"]) - time.time()) < 60
    client.send("Logoff", ActionID="l-1")
    goodbye = await client.answer("l-1")
    assert (goodbye["Response"], goodbye["Message"]) == ("Goodbye", "Thanks for all the fish.")
    await client.until(lambda: client.eof)


async def test_it_records_raw_bytes_and_actions(sim: AmiSimulator, client: Client) -> None:
    client.send("Ping", ActionID="p-9")
    await client.answer("p-9")
    assert b"Action: Ping\r\nActionID: p-9\r\n\r\n" in sim.received_raw[0]
    assert [a["Action"] for a in sim.actions] == ["Login", "Ping"]


# --------------------------------------------------------------------------- replay


async def test_replay_without_renumbering_sends_the_trace_bytes(
    sim: AmiSimulator, client: Client
) -> None:
    path = SIP / "a_inbound_answered_1001.ami"
    expected = event_frames_of(path)
    start = len(client.raw)

    await sim.play(path, speed=0, renumber=False)
    await client.until(lambda: len(client.raw) - start >= len(expected))

    assert bytes(client.raw[start:]) == expected


async def test_replays_are_renumbered_into_distinct_present_day_calls(
    sim: AmiSimulator, client: Client
) -> None:
    trace = load_trace(SIP / "d_outbound_return_visit_answered.ami")
    n = len(trace.call_events)
    before = time.time()

    await sim.play(trace, speed=0)
    await sim.play(trace, speed=0)
    await client.until(lambda: len(client.events()) >= 1 + 2 * n)

    first, second = client.events()[1 : 1 + n], client.events()[1 + n :]
    original = {e["Uniqueid"] for e in trace.call_events if "Uniqueid" in e}
    ids = [{e["Uniqueid"] for e in run if "Uniqueid" in e} for run in (first, second)]
    assert ids[0].isdisjoint(original) and ids[1].isdisjoint(original)
    assert ids[0].isdisjoint(ids[1])
    assert all(ID_VALUE.match(uid) for uid in ids[0] | ids[1])
    recordings = [e["Value"] for e in first + second if e.get("Variable") == "CC_RECFILE"]
    assert len(set(recordings)) == 2
    assert all(float(e["Timestamp"]) >= before - 1 for e in first + second if "Timestamp" in e)


async def test_replay_honours_the_recorded_gaps(sim: AmiSimulator, client: Client) -> None:
    trace = load_trace(SIP / "e1_outbound_busy.ami")
    times = replay_times(trace.call_events)
    spread = times[-1] - times[0]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sim.play(trace, speed=spread / 0.2)  # the ~5 ms call stretched to 0.2 s
    assert loop.time() - started >= 0.2 * 0.9


async def test_core_show_channels_reflects_the_live_channels_mid_replay(
    sim: AmiSimulator, client: Client
) -> None:
    partial, alive = mid_call()
    await sim.play_events(partial, speed=0, renumber=False)

    client.send("CoreShowChannels", ActionID="csc-1")
    await client.until(lambda: bool(client.events("CoreShowChannelsComplete")))

    start = await client.answer("csc-1")
    assert (start["EventList"], start["Message"]) == ("start", "Channels will follow")
    rows = client.events("CoreShowChannel")
    assert [r["Uniqueid"] for r in rows] == alive
    assert {r["ActionID"] for r in rows} == {"csc-1"}
    carrier = rows[0]
    assert carrier["Channel"].startswith("PJSIP/carrier-")
    assert carrier["CallerIDName"] == "张三" and carrier["CallerIDNum"] == "13800138000"
    assert carrier["ChannelStateDesc"] == "Up"
    entered = next(
        e for e in partial if e["Event"] == "BridgeEnter" and e["Uniqueid"] == carrier["Uniqueid"]
    )
    assert carrier["BridgeId"] == entered["BridgeUniqueid"]
    assert carrier["Application"] == "Queue"
    assert carrier["ApplicationData"].startswith("support")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", carrier["Duration"])
    complete = client.events("CoreShowChannelsComplete")[0]
    assert (complete["EventList"], complete["ListItems"]) == ("Complete", str(len(alive)))

    await sim.play(load_trace(SIP / "a_inbound_answered_1001.ami"), speed=0, renumber=False)
    assert sim.live_channel_count == 0


async def test_events_go_to_every_session_that_wants_them(sim: AmiSimulator) -> None:
    on, off = await Client.open(sim.port), await Client.open(sim.port)
    await on.login()
    await off.login(events="off")

    await sim.play(SIP / "e1_outbound_busy.ami", speed=0)
    on.send("Ping", ActionID="p-1")
    off.send("Ping", ActionID="p-2")
    await on.until(lambda: bool(on.events("Hangup")))
    await off.answer("p-2")

    assert off.events() == [] and on.events("OriginateResponse")
    on.close()
    off.close()


# --------------------------------------------------------------------------- originate


async def test_a_busy_originate_answers_with_our_ids_and_cause_17(sim: AmiSimulator) -> None:
    sim.originate_outcome = lambda headers: "busy"
    a, b = await Client.open(sim.port), await Client.open(sim.port)
    await a.login()
    await b.login()
    a.writer.write(
        encode_action(
            "Originate",
            [
                ("ActionID", "rv-C42-0001"),
                ("Channel", "PJSIP/13900000042@carrier"),
                ("Context", "outbound-campaign"),
                ("Exten", "return-visit"),
                ("Priority", "1"),
                ("Async", "true"),
                ("ChannelId", "cb-call-42"),
                ("Variable", "CUSTOMER_ID=C42"),
                ("Variable", "CAMPAIGN=birthday-2026"),
            ],
        )
    )

    ack = await a.answer("rv-C42-0001")
    await a.until(lambda: bool(a.events("Hangup")))
    await b.until(lambda: bool(b.events("OriginateResponse")))

    assert (ack["Response"], ack["Message"]) == ("Success", "Originate successfully queued")
    response = a.events("OriginateResponse")[0]
    assert response["ActionID"] == "rv-C42-0001"
    assert (response["Response"], response["Reason"]) == ("Failure", "0")
    assert response["Uniqueid"] == "cb-call-42"
    assert response["Channel"] == "PJSIP/13900000042@carrier"
    assert b.events("OriginateResponse")[0]["ActionID"] == "rv-C42-0001"  # broadcast
    assert a.events("Hangup")[0]["Cause"] == "17"
    assert a.events("Hangup")[0]["Uniqueid"] == "cb-call-42"
    assert a.events("DialBegin")[0]["DialString"] == "13900000042@carrier"
    variables = {e["Variable"]: e["Value"] for e in a.events("VarSet")}
    assert (variables["CUSTOMER_ID"], variables["CAMPAIGN"]) == ("C42", "birthday-2026")
    assert b"13900000002" not in a.raw  # the recorded number is gone
    a.close()
    b.close()


@pytest.mark.parametrize(
    ("outcome", "response", "reason", "cause"),
    [("answered", "Success", "4", "16"), ("no_answer", "Failure", "3", "19"),
     ("congestion", "Failure", "0", "34")],
)  # fmt: skip
async def test_each_originate_outcome_replays_its_recorded_call(
    sim: AmiSimulator, client: Client, outcome: str, response: str, reason: str, cause: str
) -> None:
    sim.originate_outcome = lambda headers: outcome
    client.send("Originate", ActionID="o-1", Channel="PJSIP/13900000005@carrier", Async="true")
    await client.until(lambda: bool(client.events("Hangup")))
    await client.until(lambda: bool(client.events("OriginateResponse")))

    result = client.events("OriginateResponse")[0]
    assert (result["ActionID"], result["Response"], result["Reason"]) == ("o-1", response, reason)
    assert client.events("Hangup")[-1]["Cause"] == cause


async def test_an_originate_ringing_an_agents_phone_first_replays_the_kits_click_to_call(
    sim: AmiSimulator,
) -> None:
    """A preview dial: the agent's phone is rung, then dials the Exten's number; the call
    carries the Originate's ids and its variables (not the recorded click-to-call's)."""
    sim.agent_first_trace = AGENT_FIRST_TRACE
    seen: list[list[dict[str, str]]] = []
    sim.on_originate = seen.append
    client = await Client.open(sim.port)
    await client.login()
    client.writer.write(encode_action("Originate", [
        ("ActionID", "cmp-7-3-1"), ("Channel", "PJSIP/1001"), ("Context", "internal"),
        ("Exten", "913800138005"), ("Priority", "1"), ("Async", "true"),
        ("ChannelId", "cmp-chan-7-3"), ("Variable", "CAMPAIGN=7"), ("Variable", "CUSTOMER_ID=3"),
    ]))  # fmt: skip
    await client.until(lambda: len(client.events("Hangup")) >= 2)
    await client.until(lambda: bool(client.events("OriginateResponse")))
    client.close()

    tracker = CallTracker()
    out = [e for event in client.events() for e in tracker.feed(event)]
    (answered,) = [e for e in out if isinstance(e, CallAnswered)]
    (ended,) = [e.call for e in out if isinstance(e, CallEnded)]
    assert answered.agent == "1001" and answered.call.campaign == "7"  # known when answered
    assert (ended.linkedid, ended.direction, ended.caller, ended.callee) == (
        "cmp-chan-7-3", Direction.OUTBOUND, "1001", "13800138005"
    )
    assert ended.originate_action_id == "cmp-7-3-1"
    assert ended.recording_path == "/var/spool/asterisk/monitor/cmp-chan-7-3.wav"
    variables = {e["Variable"]: e["Value"] for e in client.events("VarSet")}
    assert "CC_CLICK_TO_CALL" not in variables and variables["CUSTOMER_ID"] == "3"
    assert b"13900000001" not in client.raw and b"c2c-chan-1" not in client.raw
    assert seen and seen[0][0]["Uniqueid"] == "cmp-chan-7-3"  # told before the replay


def test_a_recorded_call_given_another_caller_names_them_everywhere() -> None:
    events = load_trace(SIP / "a_inbound_answered_1001.ami").call_events
    withheld = with_caller(events, "anonymous", "Anonymous")
    text = "".join(v for e in withheld for v in e.values())
    assert "13800138000" not in text and "张三" not in text
    first = next(e for e in withheld if e["Event"] == "Newchannel")
    assert (first["CallerIDNum"], first["CallerIDName"]) == ("anonymous", "Anonymous")
    (call,) = [e.call for e in CallTracker().feed_all(withheld) if isinstance(e, CallEnded)]
    assert call.caller is None and call.agent == "1001"  # a withheld id is no number


async def test_without_outbound_traces_an_originate_is_acked_and_the_session_stays(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with AmiSimulator(secret=SECRET, traces_dir=tmp_path) as bare:
        c = await Client.open(bare.port)
        await c.login()
        c.send("Originate", ActionID="o-1", Channel="PJSIP/13900000005@carrier", Async="true")
        c.send("Ping", ActionID="p-1")
        assert (await c.answer("o-1"))["Response"] == "Success"
        assert (await c.answer("p-1"))["Ping"] == "Pong"
        assert c.events("OriginateResponse") == []
        assert "pass traces_dir" in caplog.text
        c.close()


# --------------------------------------------------------------------------- faults


async def test_drop_clients_cuts_the_socket(sim: AmiSimulator, client: Client) -> None:
    await sim.drop_clients()
    with pytest.raises((EOFError, ConnectionResetError)):
        await client.until(lambda: False)


async def test_restart_sends_shutdown_refuses_then_listens_on_the_same_port(
    sim: AmiSimulator, client: Client
) -> None:
    partial, _ = mid_call()
    await sim.play_events(partial, speed=0)
    port = sim.port

    restart = asyncio.create_task(sim.restart(down_seconds=0.3))
    await client.until(lambda: client.eof)
    shutdown = client.events("Shutdown")[0]
    assert (shutdown["Shutdown"], shutdown["Restart"]) == ("Cleanly", "True")
    assert not sim.listening
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)

    await restart
    again = await Client.open(port)
    await again.login()
    again.send("CoreShowChannels", ActionID="c-1")
    await again.until(lambda: bool(again.events("CoreShowChannelsComplete")))
    assert again.events("CoreShowChannelsComplete")[0]["ListItems"] == "0"
    assert again.events("FullyBooted")[0]["Uptime"] == "0"
    again.close()


async def test_a_stalled_simulator_answers_nothing_but_keeps_the_socket(
    sim: AmiSimulator, client: Client
) -> None:
    sim.stall(True)
    client.send("Ping", ActionID="p-1")
    await sim.wait_for(lambda: b"p-1" in sim.received_raw[0])
    with pytest.raises(TimeoutError):
        await client.until(lambda: False, timeout=0.2)
    assert not client.eof

    sim.stall(False)
    client.send("Ping", ActionID="p-2")
    assert (await client.answer("p-2"))["Ping"] == "Pong"
    assert not any(f.get("ActionID") == "p-1" for f in client.frames)


async def test_ignored_actions_are_recorded_but_not_answered(
    sim: AmiSimulator, client: Client
) -> None:
    sim.ignore_actions({"ping"})
    client.send("Ping", ActionID="p-1")
    client.send("Bogus", ActionID="b-1")
    await client.answer("b-1")
    assert [a["Action"] for a in sim.actions_named("Ping")] == ["Ping"]
    assert not any(f.get("ActionID") == "p-1" for f in client.frames)


# --------------------------------------------------------------------------- trace files


def test_load_trace_keeps_events_only_with_replay_times() -> None:
    trace = load_trace(SIP / "e1_outbound_busy.ami")
    assert trace.banner == "Asterisk Call Manager/11.0.0"
    assert "Response" in trace.frames[0] and trace.frames[0]["Message"] == "Authentication accepted"
    assert all("Event" in e for e in trace.events)
    assert len(trace.events) == len(trace.times) == 18  # as counted in the meta file
    booted, auth = trace.events[0], trace.events[1]
    assert "Timestamp" not in booted
    assert trace.times[0] == trace.times[1] == float(auth["Timestamp"])
    assert trace.duration == pytest.approx(
        float(trace.events[-1]["Timestamp"]) - float(auth["Timestamp"])
    )
    assert [e["Event"] for e in trace.call_events][:2] == ["CEL", "Newchannel"]


def test_an_event_without_timestamp_takes_the_previous_time() -> None:
    events = [{"Event": "A"}, {"Event": "B", "Timestamp": "5.5"}, {"Event": "C"}]
    assert replay_times(events) == [5.5, 5.5, 5.5]
    assert replay_times([{"Event": "A"}]) == [0.0]


def test_two_sessions_in_one_file_both_parse() -> None:
    banner, frames = read_frames(SIP / "g2_restart_while_connected.ami")
    assert banner == "Asterisk Call Manager/11.0.0"
    kinds = [f.get("Event") or f["Response"] for f in frames]
    assert kinds == ["Success", "FullyBooted", "SuccessfulAuth", "Shutdown",
                     "Success", "FullyBooted", "SuccessfulAuth", "Goodbye"]  # fmt: skip


def test_renumber_moves_ids_and_time_but_nothing_else() -> None:
    events = load_trace(SIP / "d_outbound_return_visit_answered.ami").call_events
    moved = renumber(events, 2, start_at=2_000_000_000.0, fixed_ids={"1795346759.977": "cb-1"})

    old_times, new_times = replay_times(events), replay_times(moved)
    assert new_times[0] == pytest.approx(2_000_000_000.0)
    for old, new, old_t, new_t in zip(events, moved, old_times, new_times, strict=True):
        assert list(old) == list(new)
        assert new_t - new_times[0] == pytest.approx(old_t - old_times[0], abs=1e-5)
        for key, value in old.items():
            if key.lower().endswith(("uniqueid", "linkedid")) and ID_VALUE.match(value):
                seconds, counter = value.split(".")
                shifted = f"{seconds}.{int(counter) + 200000}"
                assert new[key] == ("cb-1" if value == "1795346759.977" else shifted)
            elif key in ("SentNTP", "EventTV", "BridgeUniqueid"):
                assert new[key] == value
    recfile = next(e["Value"] for e in moved if e.get("Variable") == "CC_RECFILE")
    assert recfile == "/var/spool/asterisk/monitor/cb-1.wav"
    assert renumber(events, 0) == events
    assert events[1]["Uniqueid"] == "1795346759.977"  # the input is not modified
