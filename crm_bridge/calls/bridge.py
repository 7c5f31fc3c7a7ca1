"""The bridge: one AMI connection and one call tracker per Asterisk server, fanned out to
the subscribers of domain events (the call log now; screen pops and the dialer later).

AMI events arrive on the event loop in wire order and go through the tracker at once; the
tracker is cheap and never blocks. While the subscribers of an AMI event's domain events run,
:attr:`BridgeService.event_rx` says when that event's bytes arrived (for latency figures).
What blocks (database writes) runs on one worker thread in the order the calls ended, so a slow
database never stalls the AMI socket. With a :class:`~crm_bridge.calls.journal.CallJournal`, the
calls that end in one turn of the loop are first appended to it and fsync'd together on a thread
of its own, then written to the database and marked done; :meth:`BridgeService.start` first
writes what a previous run left in the journal. With a reconciler
(:class:`~crm_bridge.calls.cdr_reconcile.CdrReconciler`), every resync (the first connection, and
each reconnect) is followed, on that same writer thread, by logging the calls Asterisk's own records
hold and the call log does not; the bridge is not :attr:`~BridgeService.in_step` until it is done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.exc import OperationalError

from crm_bridge.calls.call_log import CallLog
from crm_bridge.calls.journal import CallJournal
from telephony.ami_codec import EventSieve, UnsafeAmiValue
from telephony.ami_connection import AmiConfig, AmiConnection, AmiError, AmiState
from telephony.call_events import CallEnded, CallOffered, CallRecord, DomainEvent
from telephony.call_tracker import CallTracker, TrackerPolicy

log = logging.getLogger(__name__)

Subscriber = Callable[[DomainEvent], None]
Reconciler = Callable[[float, set[str]], int]
"""``(connected_at, linkedids the resync found or ended) -> calls logged``, for one server."""

CALL_VARIABLES = ("CC_RECFILE", "CAMPAIGN", "CC_SURVEY_SCORE")
"""Read back from Asterisk for the calls a resync adopts (see ``_read_call_variables``)."""


class ChannelListener(Protocol):
    """Hears the AMI channel events of a server (after the sieve) and each resync snapshot,
    for what needs channel names the domain events do not carry (live audio)."""

    def on_ami_event(self, server: str, event: dict[str, str]) -> None: ...

    def on_resync(self, server: str, channels: list[dict[str, str]]) -> None: ...


IsOwnChannel = Callable[[Mapping[str, str]], bool]

ATTEMPTS_WHILE_STOPPING = 3
"""A call is retried (0.5 s doubling to 10 s) for as long as the database is away; only once
the service is stopping does it give up, after this many more attempts, so stopping ends (a
journaled call is written at the next start)."""


@dataclass
class ServerLink:
    """One Asterisk server: its connection, its tracker, what it last reported."""

    config: AmiConfig
    tracker: CallTracker
    connection: AmiConnection | None = None
    state: AmiState = AmiState.DISCONNECTED
    calls_lost_while_disconnected: int = field(default=0)
    sieve: EventSieve = field(init=False)

    def __post_init__(self) -> None:
        self.sieve = self.tracker.sieve()

    @property
    def events_seen(self) -> int:
        """Event frames that arrived from this server, read or dropped by the sieve: the AMI
        load on the bridge is every event Asterisk sends."""
        return self.sieve.events_judged


class BridgeService:
    def __init__(
        self,
        servers: list[AmiConfig],
        call_log: CallLog,
        policy: TrackerPolicy,
        journal: CallJournal | None = None,
        reconcilers: dict[str, Reconciler] | None = None,
    ) -> None:
        self._call_log = call_log
        self._reconcilers = reconcilers or {}
        self._reconciling = 0
        self._journal = journal
        self._journal_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-journal")
        self._unjournaled: list[CallRecord] = []
        self._subscribers: list[Subscriber] = []
        self._channel_listeners: list[ChannelListener] = []
        self._own_channels: list[IsOwnChannel] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="call-log")
        self._stopping = threading.Event()
        self._pending: set[asyncio.Future] = set()
        self._being_logged: set[str] = set()
        self.links = [
            ServerLink(config=cfg, tracker=CallTracker(cfg.name, policy)) for cfg in servers
        ]
        self.event_rx: float | None = None
        """``time.monotonic()`` at which the read that completed the AMI event being handled
        returned; set only while its domain events go to the subscribers (None during a
        resync, which has no one event behind it)."""

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    def listen_to_channels(self, listener: ChannelListener, own_channel: IsOwnChannel) -> None:
        """``listener`` hears channel events and resyncs; the channels ``own_channel`` says
        the bridge placed for itself (live-audio spies, a supervisor's phone listening in) are
        hidden from the trackers, so they are never taken for calls."""
        self._channel_listeners.append(listener)
        self._own_channels.append(own_channel)

    def _own_channel(self, event: Mapping[str, str]) -> bool:
        return any(own(event) for own in self._own_channels)

    async def start(self) -> None:
        await self._replay_journal()
        for link in self.links:
            link.connection = AmiConnection(
                link.config,
                on_event=lambda ev, link=link: self._on_event(link, ev),
                on_state=lambda st, link=link: self._on_state(link, st),
                on_resync=lambda chans, at, link=link: self._on_resync(link, chans, at),
                sieve=link.sieve,
            )
            await link.connection.start()

    async def stop(self) -> None:
        self._stopping.set()
        for link in self.links:
            if link.connection is not None:
                await link.connection.stop()
        await self.drain()
        self._writer.shutdown(wait=True)
        self._journal_thread.shutdown(wait=True)
        if self._journal is not None:
            self._journal.close()

    @property
    def calls_being_logged(self) -> frozenset[str]:
        """The Linkedids of calls that have ended and wait for their call-log write: gone
        from the trackers, not yet in the database."""
        return frozenset(self._being_logged)

    @property
    def in_step(self) -> bool:
        """Every server connected and resynced since, and what ended while the bridge was
        away logged: the trackers know every call in progress, the call log every call that
        ended."""
        connected = all(link.state is AmiState.CONNECTED for link in self.links)
        return connected and self._reconciling == 0

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until every server is connected and resynced; False if the time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.in_step:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def drain(self) -> None:
        """Wait until every ended call handed to the writer is in the database."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def status(self) -> list[dict[str, object]]:
        return [
            {
                "server": link.config.name,
                "state": str(link.state),
                "calls_in_flight": link.tracker.calls_in_flight,
                "events_seen": link.events_seen,
            }
            for link in self.links
        ]

    # --------------------------------------------------------------- callbacks from AMI

    def _on_event(self, link: ServerLink, event: dict[str, str]) -> None:
        for listener in self._channel_listeners:
            self._call_listener(listener.on_ami_event, link.config.name, event)
        if self._own_channel(event):
            return
        self.event_rx = monotonic_of(event.get("_rx"))
        try:
            self._publish(link.tracker.feed(event))
        finally:
            self.event_rx = None

    def _on_resync(
        self, link: ServerLink, channels: list[dict[str, str]], started_at: float
    ) -> None:
        for listener in self._channel_listeners:
            self._call_listener(listener.on_resync, link.config.name, channels)
        channels = [channel for channel in channels if not self._own_channel(channel)]
        domain_events = link.tracker.resync(channels, started_at)
        lost = sum(1 for e in domain_events if isinstance(e, CallEnded))
        if lost:
            log.warning("%s: %d call(s) ended while the bridge was away", link.config.name, lost)
        self._publish(domain_events)
        adopted = {e.call.linkedid for e in domain_events if isinstance(e, CallOffered)}
        origins = [ch for ch in channels if ch.get("Uniqueid") in adopted]
        if origins:
            self._track(asyncio.ensure_future(self._read_call_variables(link, origins)))
        reconcile = self._reconcilers.get(link.config.name)
        if reconcile is not None:
            known = {call.linkedid for call in link.tracker.active_calls()}
            known |= {e.call.linkedid for e in domain_events if isinstance(e, CallEnded)}
            self._reconcile(reconcile, started_at, known)

    async def _read_call_variables(
        self, link: ServerLink, origins: list[dict[str, str]]
    ) -> None:
        """The variables the tracker takes from VarSet events (the recording's file name, the
        campaign, the survey's score) of calls a resync found already going: their VarSets came
        before we were there, so Asterisk is asked for them (``Getvar``, allowed by
        ``write=reporting``) and the tracker hears them as it would have. The dialplan sets them
        on the call's first channel (``dialplans/extensions_callbridge.conf``)."""
        connection = link.connection
        assert connection is not None
        for channel in origins:
            for variable in CALL_VARIABLES:
                try:
                    response = await connection.send_action(
                        "Getvar", [("Channel", channel["Channel"]), ("Variable", variable)]
                    )
                except UnsafeAmiValue as exc:  # a channel name we may not send: skip that call
                    log.warning("%s: Getvar %s refused: %s", link.config.name, variable, exc)
                    break
                except AmiError as exc:  # the link is gone: the next resync asks again
                    log.warning("%s: Getvar %s failed: %s", link.config.name, variable, exc)
                    return
                value = str(response.get("Value", "")) if response.success else ""
                if value:
                    self._on_event(link, {"Event": "VarSet", "Uniqueid": channel["Uniqueid"],
                                          "Variable": variable, "Value": value,
                                          "_rx": time.time()})  # fmt: skip

    @staticmethod
    def _call_listener(method: Callable[[str, Any], None], server: str, payload: Any) -> None:
        try:
            method(server, payload)
        except Exception:
            log.exception("channel listener failed")

    def _reconcile(self, reconcile: Reconciler, started_at: float, known: set[str]) -> None:
        self._reconciling += 1
        future = asyncio.get_running_loop().run_in_executor(
            self._writer, reconcile, started_at, known
        )

        def done(_: asyncio.Future) -> None:
            self._reconciling -= 1

        future.add_done_callback(done)
        self._track(future)

    def _on_state(self, link: ServerLink, state: AmiState) -> None:
        link.state = state

    def _publish(self, domain_events: list[DomainEvent]) -> None:
        for event in domain_events:
            if isinstance(event, CallEnded):
                self._write(event)
            for subscriber in self._subscribers:
                try:
                    subscriber(event)
                except Exception:
                    log.exception("subscriber failed on %s", type(event).__name__)

    def _write(self, event: CallEnded) -> None:
        self._being_logged.add(event.call.linkedid)
        if self._journal is None:
            self._submit(event.call)
            return
        self._unjournaled.append(event.call)
        if len(self._unjournaled) == 1:
            self._track(asyncio.ensure_future(self._journal_then_submit()))

    async def _journal_then_submit(self) -> None:
        """Journal the calls that ended in this turn of the loop (one fsync), then write each.
        A journal that cannot be written costs the protection, never the call."""
        assert self._journal is not None
        calls, self._unjournaled = self._unjournaled, []
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._journal_thread, self._journal.append, calls)
        except OSError as exc:
            log.error("call journal not written (%s): %d call(s) unprotected", exc, len(calls))
        for call in calls:
            self._submit(call)

    async def _replay_journal(self) -> None:
        """Write the calls a previous run journaled and never saw in the call log."""
        calls = self._journal.unconfirmed() if self._journal is not None else []
        if calls:
            log.warning("%d ended call(s) from the journal written to the call log", len(calls))
        for call in calls:
            self._submit(call)
        await self.drain()

    def _submit(self, call: CallRecord) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._writer, self._record_with_retry, call)
        future.add_done_callback(lambda _: self._being_logged.discard(call.linkedid))
        self._track(future)

    def _track(self, future: asyncio.Future) -> None:
        self._pending.add(future)
        future.add_done_callback(self._written)

    def _record_with_retry(self, call: CallRecord) -> int:
        delay, left_when_stopping = 0.5, ATTEMPTS_WHILE_STOPPING
        while True:
            try:
                call_id = self._call_log.record(call)
            except OperationalError as exc:
                if self._stopping.is_set():
                    left_when_stopping -= 1
                    if left_when_stopping <= 0:
                        raise
                log.warning("database unavailable (%s); call %s retried", type(exc).__name__,
                            call.linkedid)  # fmt: skip
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                if self._journal is not None:
                    self._journal.done([call.linkedid])
                return call_id

    def _written(self, future: asyncio.Future) -> None:
        self._pending.discard(future)
        if not future.cancelled() and future.exception() is not None:
            log.error("call log write failed: %s", future.exception())


def monotonic_of(wall_time: object) -> float | None:
    """The connection stamps frames with ``time.time()`` (the tracker compares it with resync
    times); latency figures want the monotonic clock, so the stamp is moved onto it."""
    if not isinstance(wall_time, float):
        return None
    return time.monotonic() - (time.time() - wall_time)
