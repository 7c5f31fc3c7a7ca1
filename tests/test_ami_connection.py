"""AmiConnection against the AMI simulator, over real sockets on 127.0.0.1."""

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import (
    AmiActionLost,
    AmiActionTimeout,
    AmiConfig,
    AmiConnection,
    AmiNotConnected,
    AmiState,
)
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

SIP = RECORDED_TRACES / "sip"
SECRET = "Tr0ub4dor-sim-5ecret"
CONNECTED = AmiState.CONNECTED


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition (the timeout only guards against a hang)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


def make_config(port: int, **overrides: Any) -> AmiConfig:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "username": "bridge",
        "secret": SECRET,
        "connect_timeout": 1.0,
        "action_timeout": 2.0,
        "ping_interval": 60.0,
        "ping_timeout": 1.0,
        "backoff_initial": 0.02,
        "backoff_max": 0.2,
    }
    settings.update(overrides)
    return AmiConfig(**settings)


class Probe:
    """Records what the connection hands to its callbacks."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.states: list[AmiState] = []
        self.resyncs: list[tuple[list[dict[str, Any]], float]] = []
        self.order: list[str] = []

    def on_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.order.append(f"event {event['Event']}")

    def on_state(self, state: AmiState) -> None:
        self.states.append(state)

    def on_resync(self, channels: list[dict[str, Any]], started_at: float) -> None:
        self.resyncs.append((channels, started_at))
        self.order.append(f"resync {len(channels)}")


Connect = Callable[..., Awaitable[tuple[AmiConnection, Probe]]]


@pytest.fixture
async def sim() -> AsyncIterator[AmiSimulator]:
    async with AmiSimulator(secret=SECRET, login_failure_delay=0.05, originate_speed=0) as s:
        yield s


@pytest.fixture
async def connect(sim: AmiSimulator) -> AsyncIterator[Connect]:
    started: list[AmiConnection] = []

    async def factory(probe: Probe | None = None, **overrides: Any) -> tuple[AmiConnection, Probe]:
        probe = probe or Probe()
        config = make_config(sim.port, **overrides)
        conn = AmiConnection(config, probe.on_event, probe.on_state, probe.on_resync)
        started.append(conn)
        await conn.start()
        return conn, probe

    yield factory
    for conn in started:
        await conn.stop()


async def connected(connect: Connect, **overrides: Any) -> tuple[AmiConnection, Probe]:
    conn, probe = await connect(**overrides)
    await until(lambda: conn.state is CONNECTED)
    return conn, probe


def mid_call(name: str = "a_inbound_answered_1001") -> tuple[list[dict[str, str]], list[str]]:
    """A trace's call events up to its first Hangup, and the Uniqueids of the channels then
    alive."""
    events = load_trace(SIP / f"{name}.ami").call_events
    partial = events[: next(i for i, e in enumerate(events) if e["Event"] == "Hangup")]
    alive = [e["Uniqueid"] for e in partial if e["Event"] == "Newchannel"]
    return partial, alive


def without_rx(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "_rx"}


# --------------------------------------------------------------------------- login


async def test_login_resyncs_then_reports_connected(sim: AmiSimulator, connect: Connect) -> None:
    conn, probe = await connected(connect)

    assert probe.states == [AmiState.CONNECTING, CONNECTED]
    assert [a["Action"] for a in sim.actions] == ["Login", "CoreShowChannels"]
    login = sim.actions[0]
    assert (login["Username"], login["Secret"], login["Events"]) == ("bridge", SECRET, "on")
    assert login["ActionID"].startswith("cb-")
    assert conn.banner == "Asterisk Call Manager/11.0.0"
    assert probe.order == ["event FullyBooted", "resync 0"]
    assert isinstance(probe.events[0]["_rx"], float)
    channels, started_at = probe.resyncs[0]
    assert channels == [] and started_at <= probe.events[0]["_rx"] + 1


async def test_a_wrong_secret_reports_auth_failed_and_never_logs_the_secret(
    sim: AmiSimulator, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-s3cret-7f3a"
    conn, probe = await connect(secret=wrong)

    await until(lambda: probe.states.count(AmiState.AUTH_FAILED) >= 2)  # and it keeps trying

    assert wrong.encode() in b"".join(sim.received_raw)  # it was really sent
    assert conn.last_error is not None and "Authentication failed" in conn.last_error
    assert CONNECTED not in probe.states
    for text in (caplog.text, conn.last_error, repr(conn), repr(conn.config), str(conn.config)):
        assert wrong not in text
    assert "secret='***'" in repr(conn.config)


async def test_a_peer_echoing_the_secret_does_not_leak_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Not Asterisk's behaviour, but a proxy or a fake could do it: the secret is scrubbed."""
    caplog.set_level(logging.DEBUG)

    async def echo_secret(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        login = await reader.readuntil(b"\r\n\r\n")
        action_id = login.split(b"ActionID: ")[1].split(b"\r\n")[0]
        writer.write(b"Response: Error\r\nActionID: " + action_id)
        writer.write(f"\r\nMessage: bad secret {SECRET}\r\n\r\n".encode())
        writer.close()

    server = await asyncio.start_server(echo_secret, "127.0.0.1", 0)
    probe = Probe()
    config = make_config(server.sockets[0].getsockname()[1])
    conn = AmiConnection(config, probe.on_event, probe.on_state, probe.on_resync)
    await conn.start()
    try:
        await until(lambda: AmiState.AUTH_FAILED in probe.states)
    finally:
        await conn.stop()
        server.close()

    assert "bad secret ***" in (conn.last_error or "")
    assert SECRET not in caplog.text


def test_a_secret_asterisk_would_misread_is_refused_without_echo() -> None:
    with pytest.raises(UnsafeAmiValue) as refused:
        make_config(1, secret="pa55\r\nEvents: off")
    assert "pa55" not in str(refused.value)


# --------------------------------------------------------------------------- events


async def test_events_arrive_in_wire_order_from_a_real_trace(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, probe = await connected(connect)
    trace = load_trace(SIP / "c_inbound_1001_noanswer_1002_answers.ami")
    expected = trace.call_events

    await sim.play(trace, speed=0, renumber=False)
    await until(lambda: len(probe.events) == 1 + len(expected))

    replayed = probe.events[1:]
    assert [without_rx(e) for e in replayed] == expected
    assert len({e["_rx"] for e in replayed}) < len(replayed)  # many frames per read
    assert any(e.get("CallerIDName") == "张三" for e in replayed)


async def test_an_on_event_that_raises_does_not_drop_the_connection(
    sim: AmiSimulator, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    class Exploding(Probe):
        def on_event(self, event: dict[str, Any]) -> None:
            super().on_event(event)
            raise RuntimeError("tracker bug")

        def on_state(self, state: AmiState) -> None:
            super().on_state(state)
            raise RuntimeError("ui bug")

        def on_resync(self, channels: list[dict[str, Any]], started_at: float) -> None:
            super().on_resync(channels, started_at)
            raise RuntimeError("resync bug")

    conn, probe = await connected(connect, probe=Exploding())
    trace = load_trace(SIP / "e1_outbound_busy.ami")

    await sim.play(trace, speed=0, renumber=False)
    await until(lambda: len(probe.events) == 1 + len(trace.call_events))

    assert conn.state is CONNECTED and sim.logins == 1
    assert (await conn.send_action("Ping")).success
    assert "on_event failed on a Hangup event" in caplog.text
    assert "RuntimeError: tracker bug" in caplog.text  # with its traceback
    assert "RuntimeError: resync bug" in caplog.text


async def test_an_originate_response_event_goes_to_on_event(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, probe = await connected(connect)
    headers = {
        "Channel": "PJSIP/13900000007@carrier",
        "Context": "outbound-campaign",
        "Exten": "return-visit",
        "Priority": "1",
        "Async": "true",
        "ChannelId": "cb-call-1",
    }

    response = await conn.send_action("Originate", headers, action_id="rv-C1-1")
    await until(lambda: any(e["Event"] == "OriginateResponse" for e in probe.events))

    assert response.success and response.action_id == "rv-C1-1"
    assert response["message"] == "Originate successfully queued"
    originate_response = next(e for e in probe.events if e["Event"] == "OriginateResponse")
    assert originate_response["ActionID"] == "rv-C1-1"
    assert originate_response["Uniqueid"] == "cb-call-1"


# --------------------------------------------------------------------------- actions


async def test_list_actions_collect_their_events(sim: AmiSimulator, connect: Connect) -> None:
    conn, _ = await connected(connect)
    partial, alive = mid_call()
    await sim.play_events(partial, speed=0, renumber=False)

    response, items = await conn.send_list_action("CoreShowChannels")

    assert response.success and response.eventlist == "start"
    assert [i["Uniqueid"] for i in items] == alive
    assert {i["Event"] for i in items} == {"CoreShowChannel"}
    assert {i["ActionID"] for i in items} == {response.action_id}
    refused, nothing = await conn.send_list_action("NoSuchList")
    assert not refused.success and nothing == []


async def test_an_unanswered_action_times_out_and_the_connection_stays(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, _ = await connected(connect)
    sim.ignore_actions({"QueueStatus"})

    with pytest.raises(AmiActionTimeout, match="QueueStatus"):
        await conn.send_action("QueueStatus", timeout=0.1)

    assert conn.state is CONNECTED
    assert (await conn.send_action("Ping")).success
    assert sim.logins == 1


async def test_actions_need_a_connection(sim: AmiSimulator) -> None:
    probe = Probe()
    conn = AmiConnection(make_config(sim.port), probe.on_event, probe.on_state, probe.on_resync)
    with pytest.raises(AmiNotConnected):
        await conn.send_action("Ping")
    await conn.start()
    await until(lambda: conn.state is CONNECTED)

    await conn.stop()

    assert conn.state is AmiState.STOPPED and probe.states[-1] is AmiState.STOPPED
    assert sim.actions[-1]["Action"] == "Logoff"
    with pytest.raises(AmiNotConnected):
        await conn.send_action("Ping")


async def test_an_injected_line_break_never_reaches_the_socket(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, _ = await connected(connect)
    injected = '"x" <1>\r\nAction: Command\r\nCommand: core restart now'

    with pytest.raises(UnsafeAmiValue) as refused:
        await conn.send_action("Originate", {"Channel": "PJSIP/1@carrier", "CallerID": injected})
    with pytest.raises(UnsafeAmiValue):
        await conn.send_action("Originate", [("Variable", "CAMPAIGN=a,CUSTOMER_ID=b")])
    assert (await conn.send_action("Ping")).success  # whatever was sent before has arrived

    received = b"".join(sim.received_raw)
    assert b"Action: Command" not in received and b"core restart" not in received
    assert sim.actions_named("Originate") == []
    assert "core restart" not in str(refused.value)


# --------------------------------------------------------------------------- reconnect


async def test_after_the_socket_is_cut_it_reconnects_and_resyncs(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, probe = await connected(connect)
    partial, alive = mid_call()
    await sim.play_events(partial, speed=0, renumber=False)
    await until(lambda: len(probe.events) == 1 + len(partial))

    await sim.drop_clients()
    await until(lambda: len(probe.resyncs) == 2 and conn.state is CONNECTED)

    assert probe.states == [
        AmiState.CONNECTING, CONNECTED, AmiState.DISCONNECTED, AmiState.CONNECTING, CONNECTED,
    ]  # fmt: skip
    channels, _ = probe.resyncs[1]
    assert [c["Uniqueid"] for c in channels] == alive
    assert channels[0]["CallerIDName"] == "张三"
    assert sim.logins == 2


async def test_an_action_pending_when_the_socket_is_cut_is_lost_not_resent(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, probe = await connected(connect)
    sim.ignore_actions({"Originate"})
    originate = {"Channel": "PJSIP/13900000001@carrier", "Async": "true"}
    pending = asyncio.create_task(conn.send_action("Originate", originate))
    await sim.wait_for_action("Originate")

    await sim.drop_clients()

    with pytest.raises(AmiActionLost, match="Originate"):
        await pending
    await until(lambda: len(probe.resyncs) == 2 and conn.state is CONNECTED)
    sim.ignore_actions(())
    assert (await conn.send_action("Ping")).success  # the new session has flushed
    assert len(sim.actions_named("Originate")) == 1
    assert sum(raw.count(b"Action: Originate") for raw in sim.received_raw) == 1


async def test_a_restart_is_followed_by_reconnect_and_backoff_resets(
    sim: AmiSimulator, connect: Connect
) -> None:
    conn, probe = await connected(connect)

    restart = asyncio.create_task(sim.restart(down_seconds=0.3))
    await until(lambda: conn.state is not CONNECTED)
    await restart
    await until(lambda: conn.state is CONNECTED and len(probe.resyncs) == 2)

    assert [e["Event"] for e in probe.events].count("Shutdown") == 1
    assert sim.logins == 2
    during_restart = list(conn.reconnect_delays)
    assert len(during_restart) >= 2  # refused at least once while Asterisk was down
    assert during_restart[1] > during_restart[0]  # and the delay grew
    assert "Refused" in (conn.last_error or "")

    await sim.drop_clients()
    await until(lambda: len(probe.resyncs) == 3)
    assert conn.reconnect_delays[-1] <= 0.02 * 1.1  # a session that stayed up resets it


async def test_backoff_grows_and_is_capped() -> None:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        closed_port = probe_socket.getsockname()[1]
    probe = Probe()
    config = make_config(closed_port, backoff_initial=0.01, backoff_max=0.08)
    conn = AmiConnection(config, probe.on_event, probe.on_state, probe.on_resync)
    await conn.start()
    try:
        await until(lambda: len(conn.reconnect_delays) >= 7)
    finally:
        await conn.stop()

    for attempt, delay in enumerate(list(conn.reconnect_delays)[:7]):
        base = min(0.08, 0.01 * 2**attempt)
        assert base <= delay <= min(0.08, base * 1.1), attempt
    assert probe.states[:2] == [AmiState.CONNECTING, AmiState.DISCONNECTED]
    assert "ConnectionRefusedError" in (conn.last_error or "")


async def test_a_half_open_peer_is_noticed_by_the_ping(sim: AmiSimulator, connect: Connect) -> None:
    conn, probe = await connected(connect, ping_interval=0.05, ping_timeout=0.1, action_timeout=0.3)

    sim.stall(True)
    await until(lambda: conn.state is not CONNECTED)

    assert "Ping" in (conn.last_error or "")
    assert b"Action: Ping" in sim.received_raw[0]
    sim.stall(False)
    await until(lambda: conn.state is CONNECTED and sim.logins == 2)


# --------------------------------------------------------------------------- booting Asterisk


class BootingAsterisk:
    """An AMI peer on a real socket that accepts the login of an Asterisk still booting: no
    ``FullyBooted`` until :meth:`boot`, then the list of no channels to ``CoreShowChannels``."""

    def __init__(self, *, may_list_channels: bool = True) -> None:
        self.may_list_channels = may_list_channels
        self.actions: list[str] = []
        self.booted = asyncio.Event()
        self.server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> "BootingAsterisk":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in self._tasks:
            task.cancel()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while frame := (await reader.readuntil(b"\r\n\r\n")).decode():
                self._answer(dict(line.split(": ", 1) for line in frame.strip().splitlines()),
                             writer)  # fmt: skip

    def _answer(self, headers: dict[str, str], writer: asyncio.StreamWriter) -> None:
        self.actions.append(headers["Action"])
        reply = f"Response: Success\r\nActionID: {headers['ActionID']}\r\n"
        if headers["Action"] == "Login":
            writer.write(f"{reply}Message: Authentication accepted\r\n\r\n".encode())
            self._tasks.add(asyncio.create_task(self._fully_booted(writer)))
        elif headers["Action"] == "CoreShowChannels" and not self.may_list_channels:
            writer.write(f"Response: Error\r\nActionID: {headers['ActionID']}\r\n"
                         "Message: Permission denied\r\n\r\n".encode())  # fmt: skip
        elif headers["Action"] == "CoreShowChannels":
            writer.write(f"{reply}EventList: start\r\nMessage: Channels will follow\r\n\r\n"
                         f"Event: CoreShowChannelsComplete\r\nActionID: {headers['ActionID']}"
                         "\r\nEventList: Complete\r\nListItems: 0\r\n\r\n".encode())  # fmt: skip

    async def _fully_booted(self, writer: asyncio.StreamWriter) -> None:
        await self.booted.wait()
        writer.write(b"Event: FullyBooted\r\nPrivilege: system,all\r\nStatus: Fully Booted\r\n\r\n")


async def test_connected_only_once_asterisk_says_it_has_booted() -> None:
    async with BootingAsterisk() as pbx:
        probe = Probe()
        conn = AmiConnection(make_config(pbx.port), on_event=probe.on_event,
                             on_state=probe.on_state, on_resync=probe.on_resync)  # fmt: skip
        await conn.start()
        try:
            await until(lambda: pbx.actions == ["Login"])
            await asyncio.sleep(0.3)
            assert conn.state is AmiState.CONNECTING and pbx.actions == ["Login"]
            pbx.booted.set()
            await until(lambda: conn.state is CONNECTED)
            assert pbx.actions == ["Login", "CoreShowChannels"]
            assert probe.order == ["event FullyBooted", "resync 0"]
        finally:
            await conn.stop()


async def test_a_session_without_system_events_does_not_wait_for_fully_booted() -> None:
    async with BootingAsterisk() as pbx:
        conn = AmiConnection(make_config(pbx.port, events="call"), on_event=lambda _: None)
        await conn.start()
        try:
            await until(lambda: conn.state is CONNECTED)
        finally:
            pbx.booted.set()
            await conn.stop()


async def test_each_session_logs_under_its_purpose_and_server(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="telephony.ami_connection")
    async with BootingAsterisk() as pbx:
        pbx.booted.set()
        config = make_config(pbx.port, name="pbx2", purpose="dialer")
        conn = AmiConnection(config, on_event=lambda _: None)
        await conn.start()
        try:
            await until(lambda: conn.state is CONNECTED)
        finally:
            await conn.stop()
    assert "AMI dialer@pbx2: connected" in caplog.text
    assert "AMI default" not in caplog.text and repr(conn).startswith("<AmiConnection dialer@pbx2")


async def test_a_refused_resync_names_the_write_class_it_needs() -> None:
    async with BootingAsterisk(may_list_channels=False) as pbx:
        pbx.booted.set()
        conn = AmiConnection(make_config(pbx.port), on_event=lambda _: None)
        await conn.start()
        try:
            await until(lambda: conn.last_error is not None)
        finally:
            await conn.stop()
    assert "Permission denied" in conn.last_error and "write=reporting" in conn.last_error
    assert "read=" not in conn.last_error
