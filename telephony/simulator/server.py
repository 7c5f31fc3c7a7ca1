"""A fake Asterisk 22 manager on a real TCP socket, for the tests and the demo.

It speaks AMI the way the recorded traces show Asterisk does: the banner without a blank line,
``Login`` (a wrong secret is answered after a delay, then the socket is closed), ``FullyBooted``
after login, ``Ping``, ``Logoff``, ``CoreShowChannels`` (an EventList built from the channels
the replayed events created and have not hung up) and ``Originate`` (always handled as
``Async: true``: the ack, then a recorded outbound call replayed with fresh ids, the caller's
ActionID, ChannelId, number and variables). Any other action gets
``Response: Error / Message: Invalid/unknown command``; before login every action but
Login/Logoff gets ``Permission denied``. Events go to every logged-in session whose ``Events``
mask wants them, OriginateResponse included, as Asterisk does.

Tests drive faults through :meth:`AmiSimulator.drop_clients`, :meth:`~AmiSimulator.restart`,
:meth:`~AmiSimulator.stall` and :meth:`~AmiSimulator.ignore_actions`, and check what the client
sent through :attr:`~AmiSimulator.received_raw` and :attr:`~AmiSimulator.actions`.

The outbound traces are read from ``traces_dir`` (default: the repository's
``telephony/traces/sip``), which must hold the ``d``/``e1``/``e2``/``e3`` recordings. Those
ring the customer first. An Originate that rings an agent's phone first (a ``Channel`` with no
``@trunk``, as click-to-call and preview campaigns send) gets ``agent_first_trace`` instead, when
one is given: :data:`AGENT_FIRST_TRACE` is the PBX kit's recorded click-to-call, where the agent
answers and their phone then dials the number of the Originate's ``Exten``.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

from telephony.ami_codec import AmiProtocolError, parse_frame
from telephony.simulator.protocol import (
    ClientAction,
    ClientSession,
    encode_message,
    parse_event_mask,
)
from telephony.simulator.replay import (
    LiveChannels,
    OriginateRewrite,
    agent_first_rewrite,
    recorded_number,
)
from telephony.trace_files import Trace, load_trace, replay_times, without_session_events
from telephony.trace_files import renumber as renumber_events

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
DEFAULT_TRACES_DIR = Path(__file__).resolve().parents[1] / "traces" / "sip"
ORIGINATE_TRACES = {
    "answered": "d_outbound_return_visit_answered",
    "busy": "e1_outbound_busy",
    "no_answer": "e2_outbound_noanswer",
    "congestion": "e3_outbound_congestion",
}
AGENT_FIRST_TRACE = DEFAULT_TRACES_DIR.parent / "kit" / "click_to_call_answered.ami"
_PRE_LOGIN_ACTIONS = frozenset({"login", "logoff", "challenge"})


def always_answered(_headers: Mapping[str, str]) -> str | None:
    """The default ``originate_outcome``: every call is answered."""
    return "answered"


class AmiSimulator:
    """See the module docstring. ``await start()`` returns the port it listens on."""

    def __init__(
        self,
        username: str = "bridge",
        secret: str = "simulator-secret",  # noqa: S107 - a fake Asterisk: it guards nothing
        host: str = "127.0.0.1",
        port: int = 0,
        login_failure_delay: float = 1.0,
        *,
        originate_outcome: Callable[[Mapping[str, str]], str | None] = always_answered,
        originate_speed: float = 1.0,
        traces_dir: Path | None = None,
        agent_first_trace: Path | None = None,
        on_originate: Callable[[list[dict[str, str]]], None] | None = None,
    ) -> None:
        self.username = username
        self.secret = secret
        self.host = host
        self.login_failure_delay = login_failure_delay
        self.originate_outcome = originate_outcome
        self.originate_speed = originate_speed
        self.traces_dir = traces_dir or DEFAULT_TRACES_DIR
        self.agent_first_trace = agent_first_trace
        self.on_originate = on_originate
        """Called with the events of an Originate's call before they are replayed (the demo
        writes the recording where the call will report it)."""
        self.actions: list[dict[str, str]] = []
        self.logins = 0
        self._port = port
        self._server: asyncio.Server | None = None
        self._sessions: list[ClientSession] = []
        self._channels = LiveChannels()
        self._stalled = False
        self._ignored: frozenset[str] = frozenset()
        self._offsets = itertools.count(1)
        self._traces: dict[Path, Trace] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._serving: set[asyncio.Task[None]] = set()
        self._booted = time.monotonic()
        self._progress = asyncio.Event()
        self._handlers: dict[str, Callable[[ClientSession, ClientAction], Awaitable[None]]] = {
            "login": self._login,
            "logoff": self._logoff,
            "ping": self._ping,
            "coreshowchannels": self._core_show_channels,
            "originate": self._originate,
        }

    # -- lifecycle

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        self._booted = time.monotonic()
        return self._port

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for session in self._sessions:
            session.writer.transport.abort()
        await self._close_listener()
        await asyncio.gather(*self._tasks, *self._serving, return_exceptions=True)

    async def _close_listener(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            server.close()
            await server.wait_closed()

    async def __aenter__(self) -> AmiSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def listening(self) -> bool:
        """False while stopped or while a restart refuses connections."""
        return self._server is not None

    @property
    def received_raw(self) -> list[bytes]:
        """Every byte each client session sent, one entry per session in connection order."""
        return [bytes(s.raw) for s in self._sessions]

    @property
    def live_channel_count(self) -> int:
        return len(self._channels)

    # -- waiting helpers for tests

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` holds; it is checked after each action and login."""
        async with asyncio.timeout(timeout):
            while not predicate():
                await self._progress.wait()

    async def wait_for_action(self, name: str, count: int = 1, timeout: float = 5.0) -> None:
        await self.wait_for(lambda: len(self.actions_named(name)) >= count, timeout)

    def actions_named(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.actions if a.get("Action", "").lower() == name.lower()]

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    # -- faults

    async def drop_clients(self) -> None:
        """Cut every client socket at once (RST), like a network failure."""
        for session in self._sessions:
            session.writer.transport.abort()
        await asyncio.sleep(0)

    async def restart(self, down_seconds: float) -> None:
        """``core restart now``: Shutdown to every session, close, refuse connections for
        ``down_seconds``, then listen again on the same port with no live channels."""
        shutdown = [
            ("Event", "Shutdown"),
            ("Privilege", "system,all"),
            ("Timestamp", f"{time.time():.6f}"),
            ("Shutdown", "Cleanly"),
            ("Restart", "True"),
        ]
        for session in self._sessions:
            if session.wants(dict(shutdown)):
                session.send(encode_message(shutdown))
            session.writer.close()
        await self._close_listener()
        self._channels.clear()
        await asyncio.sleep(down_seconds)
        await self.start()

    def stall(self, on: bool = True) -> None:
        """Half-open: while on, answer nothing and send nothing (also no banner), but keep every
        socket open. Actions received meanwhile are recorded in ``received_raw`` only."""
        self._stalled = on

    def ignore_actions(self, names: Iterable[str]) -> None:
        """Record but never answer these actions (replaces the previous set)."""
        self._ignored = frozenset(n.lower() for n in names)

    # -- replay

    async def play(
        self, trace_or_path: Trace | str | Path, speed: float = 1.0, renumber: bool = True
    ) -> None:
        """Replay a trace's call events to every logged-in session, honouring the recorded
        gaps divided by ``speed`` (0 or inf: as fast as possible); returns when done."""
        trace = trace_or_path if isinstance(trace_or_path, Trace) else load_trace(trace_or_path)
        await self.play_events(trace.events, speed, renumber)

    async def play_events(
        self, events: Sequence[Mapping[str, str]], speed: float = 1.0, renumber: bool = True
    ) -> None:
        """Like :meth:`play` for a list of event dicts (a slice of ``Trace.events``); events of
        the recording client's own session (:data:`~telephony.trace_files.SESSION_EVENTS`) are
        skipped. With ``renumber``, the calls get fresh ids and present-day timestamps."""
        calls = without_session_events(events)
        if renumber:
            calls = self.renumbered(calls)
        await self._replay(calls, speed)

    def renumbered(self, events: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        """``events`` with fresh ids (none shared with another replay of this simulator) and
        present-day timestamps: what :meth:`play_events` replays. Whoever must know the new ids
        before the replay (the demo writes each call's recording where the call will report
        it) renumbers here and plays with ``renumber=False``."""
        return renumber_events(events, next(self._offsets), start_at=time.time())

    async def _replay(self, events: Sequence[Mapping[str, str]], speed: float) -> None:
        if not events:
            return
        times = replay_times(events)
        loop = asyncio.get_running_loop()
        start = loop.time()
        fast = speed <= 0 or math.isinf(speed)
        i = 0
        while i < len(events):
            if not fast:
                await asyncio.sleep(start + (times[i] - times[0]) / speed - loop.time())
            elapsed = loop.time() - start
            j = i + 1
            while j < len(events) and (fast or (times[j] - times[0]) / speed <= elapsed):
                j += 1
            self._broadcast(events[i:j])
            i = j

    def _broadcast(self, events: Sequence[Mapping[str, str]]) -> None:
        """Send events due at once in one write per session, as Asterisk batches them."""
        now = time.time()
        for event in events:
            self._channels.apply(event, now)
        if self._stalled:
            return
        encoded = [(event, encode_message(event.items())) for event in events]
        for session in self._sessions:
            session.send(b"".join(data for event, data in encoded if session.wants(event)))

    # -- sessions

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = ClientSession(writer)
        self._sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)
        if not self._stalled:
            session.send(BANNER)
        try:
            while not session.closed:
                data = await reader.read(64 * 1024)
                if not data:
                    break
                session.raw += data
                self._notify()
                for raw in session.framer.feed_raw(data):
                    if not self._stalled and (pairs := parse_frame(raw)):
                        await self._handle(session, ClientAction(pairs))
        except (OSError, AmiProtocolError) as exc:
            log.debug("simulator session ended: %s", type(exc).__name__)
        finally:
            writer.close()

    async def _handle(self, session: ClientSession, action: ClientAction) -> None:
        name = action.name.lower()
        self.actions.append(action.headers)
        self._notify()
        if not name:
            session.send(action.response("Error", message="Missing action in request"))
        elif name in self._ignored:
            return
        elif not session.logged_in and name not in _PRE_LOGIN_ACTIONS:
            session.send(action.response("Error", message="Permission denied"))
        elif handler := self._handlers.get(name):
            await handler(session, action)
        else:
            session.send(action.response("Error", message="Invalid/unknown command"))

    async def _login(self, session: ClientSession, action: ClientAction) -> None:
        if session.logged_in:
            session.send(action.response("Success", message="Already authenticated"))
            return
        user_ok = hmac.compare_digest(action.get("Username").encode(), self.username.encode())
        secret_ok = hmac.compare_digest(action.get("Secret").encode(), self.secret.encode())
        if not (user_ok and secret_ok):
            await asyncio.sleep(self.login_failure_delay)
            session.send(action.response("Error", message="Authentication failed"))
            session.writer.close()
            return
        session.logged_in = True
        session.event_mask = parse_event_mask(action.get("Events"))
        self.logins += 1
        self._notify()
        session.send(action.response("Success", message="Authentication accepted"))
        booted = [
            ("Event", "FullyBooted"),
            ("Privilege", "system,all"),
            ("Uptime", str(int(time.monotonic() - self._booted))),
            ("LastReload", str(int(time.monotonic() - self._booted))),
            ("Status", "Fully Booted"),
        ]
        if session.wants(dict(booted)):
            session.send(encode_message(booted))

    async def _logoff(self, session: ClientSession, action: ClientAction) -> None:
        session.send(action.response("Goodbye", message="Thanks for all the fish."))
        session.writer.close()

    async def _ping(self, session: ClientSession, action: ClientAction) -> None:
        session.send(
            action.response("Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))
        )

    async def _core_show_channels(self, session: ClientSession, action: ClientAction) -> None:
        action_id = [("ActionID", v) for v in [action.get("ActionID")] if v]
        rows = self._channels.listing(time.time())
        parts = [action.response("Success", ("EventList", "start"), message="Channels will follow")]
        parts += [encode_message([("Event", "CoreShowChannel"), *action_id, *row]) for row in rows]
        complete = [("EventList", "Complete"), ("ListItems", str(len(rows)))]
        parts.append(encode_message([("Event", "CoreShowChannelsComplete"), *action_id, *complete]))
        session.send(b"".join(parts))

    async def _originate(self, session: ClientSession, action: ClientAction) -> None:
        if not action.get("Channel"):
            session.send(action.response("Error", message="Channel not specified"))
            return
        session.send(action.response("Success", message="Originate successfully queued"))
        outcome = self.originate_outcome(action.headers)
        if outcome is None:
            return
        if outcome not in ORIGINATE_TRACES:
            log.warning("simulator: unknown originate outcome %r, no call replayed", outcome)
            return
        try:
            trace = self._originate_trace(action, outcome)
        except OSError as exc:
            log.error("simulator: no %s trace to replay (%s); pass traces_dir", outcome, exc)
            return
        events = self._originate_events(action, trace)
        if self.on_originate is not None:
            self.on_originate(events)
        self._spawn(self._replay(events, self.originate_speed))

    # -- originate helpers

    def _originate_trace(self, action: ClientAction, outcome: str) -> Trace:
        """The recorded call that answers this Originate: the agent-first one for an agent's
        phone (when there is one and the call is answered), else the outcome's trunk call."""
        rings_agent_first = "@" not in action.get("Channel")
        if rings_agent_first and outcome == "answered" and self.agent_first_trace is not None:
            return self._trace(self.agent_first_trace)
        return self._trace(self.traces_dir / f"{ORIGINATE_TRACES[outcome]}.ami")

    def _trace(self, path: Path) -> Trace:
        if path not in self._traces:
            self._traces[path] = load_trace(path)
        return self._traces[path]

    def _originate_events(self, action: ClientAction, trace: Trace) -> list[dict[str, str]]:
        """The recorded call, as if it had been placed by this Originate."""
        events = trace.call_events
        channel_id = action.get("ChannelId")
        originated = next((e["Uniqueid"] for e in events if e["Event"] == "Newchannel"), None)
        fixed = {originated: channel_id} if channel_id and originated else None
        fresh = renumber_events(events, next(self._offsets), start_at=time.time(), fixed_ids=fixed)
        if "@" not in action.get("Channel"):
            fresh = agent_first_rewrite(fresh, action, originated)
        rewrite = OriginateRewrite(action, recorded_number(fresh))
        return [rewrite(event) for event in fresh]

    def _spawn(self, coro: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

