"""Screen pops past one machine: the bridge's domain events relayed between instances through
PostgreSQL ``LISTEN``/``NOTIFY``.

Each web/bridge instance watches its own Asterisk server(s). An agent's page may be open on any
instance, so every instance publishes the domain events its bridge emits on one channel
(:data:`CHANNEL`), and feeds the events the others publish to its own
:class:`~crm_bridge.pops.hub.PopHub` as if its bridge had seen them: the hub looks the caller up
itself and routes the frames to its own pages. What is relayed is the small domain event with
its call's snapshot, not the rendered card: a card depends on the page it goes to, and every
instance reads the same archive.

Only the hub hears a relayed event. The call log is written by the instance whose bridge saw
the call, so a relayed ``CallEnded`` is never written twice.

The payload (:func:`~crm_bridge.pops.relay_payload.encode`,
:func:`~crm_bridge.pops.relay_payload.decode`) is compact JSON: the format version, the origin
instance (an instance ignores its own notifications, which PostgreSQL delivers to it too), the
wall-clock time at which the AMI event's bytes arrived at the origin (each process moves it to
and from its own monotonic clock, so a pop frame's ``ami_rx`` means the same on every
instance), the event's type and its fields. PostgreSQL refuses a payload of 8000 bytes or
more; a real call's snapshot is a few hundred bytes, and only the list of agents a call rang
can grow without bound (a ring-all queue of hundreds), so that list is cut to its last
:data:`AGENTS_RUNG_KEPT` entries (the hub does not read it) and an event still too long is
refused with a log line.

The publisher never blocks the bridge: :meth:`PopPublisher.on_event` only puts the payload in a
bounded queue that one task sends over one dedicated connection, everything that waited in one
statement (a burst of calls is not held up behind one round trip per event). It is the bridge's
first subscriber, so an event leaves before this instance's own caller lookup runs. While
PostgreSQL is away the events are dropped and counted (a warning when the outage starts and
one with the count when it ends) and the connection is retried with a capped exponential
back-off. After a connection that was up is lost, the events wait in the queue during the
first back-off step, and the batch whose send failed is sent again on the new connection, so a
restarted or terminated backend costs no event. A connection that drops while its
``pg_notify`` was being committed may deliver that batch twice; the hub shows a repeated ring
as the same card again.

The listener is a second dedicated connection that runs ``LISTEN`` and hands what it decodes
to the hub. Notifications sent while it was away are lost (PostgreSQL keeps none for a session
that is not listening), and so is everything an instance sent before it stopped for good. So
that no card then waits forever for its ``CallEnded``, every instance publishes the linkedids
of its calls in flight every :data:`LIVE_EVERY` seconds (in parts that fit a payload), in
order with its events; a listener ends (a ``CallEnded`` with ``end_reason``
``lost_while_disconnected``, to the hub only) every call it holds of that instance that is
not on the list, and every call of an instance it has not heard for :data:`LIVE_SILENCE`
seconds while it was listening.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from crm_bridge.calls.bridge import BridgeService, monotonic_of
from crm_bridge.pops.hub import PopHub
from crm_bridge.pops.relay_payload import (
    LiveCalls,
    LiveParts,
    PayloadTooLong,
    decode,
    encode,
    encode_live,
    wall_of,
)
from crm_bridge.settings import Settings
from telephony.call_events import (
    CallEnded,
    CallRecord,
    DomainEvent,
    EndReason,
)

log = logging.getLogger(__name__)

CHANNEL = "callbridge_pops"
OUTBOX_SIZE = 1000
"""Payloads waiting for the publisher's connection; past this, events are dropped."""
BATCH_MAX = 100
"""Payloads sent in one statement at most (they are NOTIFYed in order, in one transaction)."""
NOTIFY_BATCH = "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload"
"""One round trip for every payload that waited while the previous one was sent: a burst of
calls is not held up behind one round trip per event. ``unnest`` yields the array in order; the
batch is one transaction, in which PostgreSQL folds identical payloads (only a repeated event
could be one)."""
SEND_TIMEOUT = 5.0
"""A batch of ``pg_notify`` that takes longer than this counts as a lost connection."""
CONNECT_TIMEOUT = 5
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 30.0
STABLE_SECONDS = 10.0
"""A connection lost after this long is retried after the first back-off step; one lost
sooner counts as one more failure in a row (so a server that drops every connection at once is
not hammered)."""
LIVE_EVERY = 5.0
"""Seconds between two lists of the calls an instance has in flight."""
LIVE_SILENCE = 20.0
"""An instance not heard for this long (while the listener was connected) is taken for gone,
and the cards of its calls are ended."""
APPLICATION_NAME = "callbridge-pop-relay"
"""The ``application_name`` of both relay connections (as ``pg_stat_activity`` shows them)."""


if TYPE_CHECKING:  # psycopg is the postgres extra: imported where the relay runs
    import psycopg


def libpq_conninfo(database_url: str) -> str:
    """The SQLAlchemy database URL as libpq takes it (no ``+psycopg`` driver suffix)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


# ------------------------------------------------------------------------------- connections


class _RelayConnection(abc.ABC):
    """One dedicated connection kept open by a task: connects, serves until the connection
    fails, and reconnects after a back-off (capped, jittered) that grows while connecting
    fails or connections keep failing soon after they were made. The publisher and the
    listener each say what serving is (:meth:`_serve`)."""

    role = "relay"

    def __init__(self, conninfo: str, channel: str, backoff: tuple[float, float]) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._backoff = backoff
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.down = False
        """True from a failed connection attempt until a connection is made again."""
        self.connections_made = 0
        """Connections opened so far (a reconnect makes this grow)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pop-relay-{self.role}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        import psycopg

        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo,
                    autocommit=True,
                    connect_timeout=CONNECT_TIMEOUT,
                    application_name=APPLICATION_NAME,
                )
            except psycopg.Error as exc:
                failures += 1
                self._went_down(exc)
                await asyncio.sleep(self._delay(failures))
                continue
            self.down = False
            self.connections_made += 1
            opened = time.monotonic()
            try:
                await self._serve(conn)
            except (psycopg.Error, TimeoutError) as exc:
                log.warning("pop relay %s: connection lost (%s); reconnecting", self.role,
                            type(exc).__name__)  # fmt: skip
            except Exception:
                log.exception("pop relay %s failed; reconnecting", self.role)
            finally:
                self.connected.clear()
                with contextlib.suppress(psycopg.Error):
                    await conn.close()
            failures = 1 if time.monotonic() - opened >= STABLE_SECONDS else failures + 1
            await asyncio.sleep(self._delay(failures))

    def _delay(self, failures: int) -> float:
        initial, cap = self._backoff
        return min(cap, initial * 2 ** (failures - 1)) * random.uniform(1.0, 1.2)

    def _went_down(self, exc: Exception) -> None:
        """A connection attempt failed: warn once per outage."""
        if not self.down:
            log.warning("pop relay %s: PostgreSQL unreachable (%s); retrying with back-off",
                        self.role, type(exc).__name__)  # fmt: skip
        self.down = True

    @abc.abstractmethod
    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Use ``conn`` until it fails (raise) or the task is cancelled."""


@dataclass(frozen=True, slots=True)
class _Outgoing:
    payload: str
    is_event: bool
    """False for a part of the list of calls in flight (not counted as an event)."""


def _events_in(outgoing: list[_Outgoing]) -> int:
    return sum(item.is_event for item in outgoing)


class PopPublisher(_RelayConnection):
    """The bridge's subscriber that NOTIFYs every domain event on the channel."""

    role = "publisher"

    def __init__(
        self,
        conninfo: str,
        origin: str,
        received_at: Callable[[], float | None],
        channel: str = CHANNEL,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
    ) -> None:
        """``received_at``: while :meth:`on_event` runs, the ``time.monotonic()`` at which the
        AMI event behind it arrived (``BridgeService.event_rx``)."""
        super().__init__(conninfo, channel, backoff)
        self._origin = origin
        self._received_at = received_at
        self._outbox: asyncio.Queue[_Outgoing] = asyncio.Queue(OUTBOX_SIZE)
        self._unsent: list[_Outgoing] = []
        """The batch being sent; kept until the send succeeds (sent again after a reconnect)."""
        self._dropped_in_outage = 0
        self._live_seq = 0
        self.published = 0
        """Events NOTIFYed (the lists of calls in flight are not counted)."""
        self.dropped = 0
        """Events not relayed because PostgreSQL was away or the outbox was full."""
        self.refused = 0
        """Events not relayed because they did not fit in a payload or PostgreSQL refused
        them while the connection stayed up."""

    def on_event(self, event: DomainEvent) -> None:
        """Queue the event for the other instances; never blocks."""
        if self.down:
            self._drop(1)
            return
        try:
            payload = encode(event, self._origin, wall_of(self._received_at()))
        except PayloadTooLong as exc:
            self.refused += 1
            log.warning("pop relay: event not relayed, too long for NOTIFY: %s", exc)
            return
        self._queue(_Outgoing(payload, is_event=True))

    def publish_live(self, linkedids: Iterable[str]) -> None:
        """Queue the list of the calls this instance has in flight, behind every event
        queued so far."""
        if self.down:
            return
        self._live_seq += 1
        for payload in encode_live(self._origin, self._live_seq, linkedids):
            self._queue(_Outgoing(payload, is_event=False))

    def _queue(self, outgoing: _Outgoing) -> None:
        try:
            self._outbox.put_nowait(outgoing)
        except asyncio.QueueFull:
            self._drop(int(outgoing.is_event))

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        import psycopg

        self._back_up()
        while True:
            if not self._unsent:
                self._unsent = await self._next_batch()
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    payloads = [outgoing.payload for outgoing in self._unsent]
                    await conn.execute(NOTIFY_BATCH, (self._channel, payloads))
            except psycopg.Error as exc:
                if conn.broken or conn.closed:
                    raise
                log.error("pop relay: PostgreSQL refused %d payload(s): %s", len(self._unsent),
                          type(exc).__name__)  # fmt: skip
                self.refused += _events_in(self._unsent)
            else:
                self.published += _events_in(self._unsent)
            self._unsent = []

    def _went_down(self, exc: Exception) -> None:
        super()._went_down(exc)
        waiting, self._unsent = self._unsent, []
        while not self._outbox.empty():
            waiting.append(self._outbox.get_nowait())
        self._drop(_events_in(waiting))

    async def _next_batch(self) -> list[_Outgoing]:
        """The next payload and every one waiting behind it, up to ``BATCH_MAX``."""
        batch = [await self._outbox.get()]
        while len(batch) < BATCH_MAX and not self._outbox.empty():
            batch.append(self._outbox.get_nowait())
        return batch

    def _back_up(self) -> None:
        self.connected.set()
        if self._dropped_in_outage:
            log.warning("pop relay: PostgreSQL is back; %d event(s) were not relayed meanwhile",
                        self._dropped_in_outage)  # fmt: skip
            self._dropped_in_outage = 0

    def _drop(self, count: int) -> None:
        if count == 0:
            return
        if self._dropped_in_outage == 0:
            log.warning("pop relay: PostgreSQL away or too slow; events dropped and counted")
        self.dropped += count
        self._dropped_in_outage += count


class PopListener(_RelayConnection):
    """Runs ``LISTEN`` on the channel and hands the other instances' events to ``deliver``.

    It keeps the last snapshot of every relayed call in flight, so that it can end the card of
    a call whose ``CallEnded`` it never heard (see the module docstring)."""

    role = "listener"

    def __init__(
        self,
        conninfo: str,
        origin: str,
        deliver: Callable[[DomainEvent, float | None], None],
        channel: str = CHANNEL,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
    ) -> None:
        """``deliver(event, rx)``: ``rx`` is the event's AMI arrival on this process's
        ``time.monotonic()`` clock, or None."""
        super().__init__(conninfo, channel, backoff)
        self._origin = origin
        self._deliver = deliver
        self._calls: dict[str, tuple[str, CallRecord]] = {}
        """Linkedid -> the instance that relays the call, and the call's last snapshot."""
        self._heard: dict[str, float] = {}
        """Instance -> when it was last heard (``time.monotonic()``)."""
        self._live: dict[str, LiveParts] = {}
        self.received = 0
        self.malformed = 0
        self.ended_unheard = 0
        """Relayed calls ended here because their instance no longer had them or fell silent."""

    @property
    def calls_held(self) -> int:
        return len(self._calls)

    def end_silent_instances(self, now: float | None = None) -> None:
        """End the calls of every instance not heard for :data:`LIVE_SILENCE` seconds."""
        now = time.monotonic() if now is None else now
        for origin, heard in list(self._heard.items()):
            if now - heard > LIVE_SILENCE:
                del self._heard[origin]
                self._live.pop(origin, None)
                self._end_calls_of(origin, keep=frozenset())

    async def _serve(self, conn: psycopg.AsyncConnection[Any]) -> None:
        from psycopg import sql

        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        self.connected.set()
        now = time.monotonic()  # the time away does not count as the others' silence
        self._heard = dict.fromkeys(self._heard, now)
        async for notify in conn.notifies():
            self._receive(notify.payload)

    def _receive(self, payload: str) -> None:
        try:
            message = decode(payload)
        except ValueError as exc:
            self.malformed += 1
            log.warning("pop relay: %s", exc)
            return
        if message.origin == self._origin:
            return
        self._heard[message.origin] = time.monotonic()
        if isinstance(message, LiveCalls):
            self._live_part(message)
            return
        self.received += 1
        event = message.event
        if isinstance(event, CallEnded):
            self._calls.pop(event.call.linkedid, None)
        else:
            self._calls[event.call.linkedid] = (message.origin, event.call)
        self._hand_over(event, monotonic_of(message.received_at))

    def _live_part(self, message: LiveCalls) -> None:
        heard = self._live.get(message.origin)
        if heard is None or heard.seq != message.seq:
            heard = self._live[message.origin] = LiveParts(message.seq)
        heard.parts_heard.add(message.part)
        heard.linkedids |= message.linkedids
        if len(heard.parts_heard) == message.parts:
            del self._live[message.origin]
            self._end_calls_of(message.origin, keep=frozenset(heard.linkedids))

    def _end_calls_of(self, origin: str, keep: frozenset[str]) -> None:
        """End every call relayed by ``origin`` but those in ``keep``."""
        gone = [lid for lid, (o, _) in self._calls.items() if o == origin and lid not in keep]
        for linkedid in gone:
            _, call = self._calls.pop(linkedid)
            now = time.time()
            end_reason = EndReason.LOST_WHILE_DISCONNECTED
            call = replace(call, ended_at=call.ended_at or now, end_reason=end_reason)
            self._hand_over(CallEnded(call, now), None)
        if gone:
            self.ended_unheard += len(gone)
            log.warning("pop relay: %d call(s) of another instance ended unheard", len(gone))

    def _hand_over(self, event: DomainEvent, rx: float | None) -> None:
        try:
            self._deliver(event, rx)
        except Exception:
            log.exception("pop relay: relayed %s failed", type(event).__name__)


# ------------------------------------------------------------------------------- the pair


class PopRelay:
    """This instance's publisher and listener on one channel, and the beat that publishes its
    calls in flight every :data:`LIVE_EVERY` seconds and ends the calls of silent instances."""

    def __init__(
        self,
        conninfo: str,
        received_at: Callable[[], float | None],
        deliver: Callable[[DomainEvent, float | None], None],
        live_calls: Callable[[], Iterable[str]],
        channel: str = CHANNEL,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
    ) -> None:
        """``live_calls``: the linkedids of the calls this instance's bridge has in flight."""
        self.origin = uuid.uuid4().hex[:16]
        self.publisher = PopPublisher(conninfo, self.origin, received_at, channel, backoff)
        self.listener = PopListener(conninfo, self.origin, deliver, channel, backoff)
        self._live_calls = live_calls
        self._beat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.publisher.start()
        self.listener.start()
        self._beat = asyncio.create_task(self._run_beat(), name="pop-relay-beat")

    async def stop(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        await self.publisher.stop()
        await self.listener.stop()

    async def _run_beat(self) -> None:
        while True:
            await asyncio.sleep(LIVE_EVERY)
            try:
                self.publisher.publish_live(self._live_calls())
                if self.listener.connected.is_set():
                    self.listener.end_silent_instances()
            except Exception:
                log.exception("pop relay: the beat failed")

    async def wait_connected(self, timeout: float) -> bool:
        """Wait until both connections are up; False if the time ran out."""
        try:
            async with asyncio.timeout(timeout):
                await self.publisher.connected.wait()
                await self.listener.connected.wait()
        except TimeoutError:
            return False
        return True


def start_pop_relay(settings: Settings, bridge: BridgeService, hub: PopHub) -> PopRelay | None:
    """The relay between ``bridge``, ``hub`` and the other instances, started; None when the
    settings leave it off. Call before the bridge starts, so that it hears every event."""
    if not settings.pop_relay_enabled:
        return None
    relay = PopRelay(
        libpq_conninfo(settings.database_url),
        received_at=lambda: bridge.event_rx,
        deliver=hub.on_event,
        live_calls=lambda: [
            c.linkedid for link in bridge.links for c in link.tracker.active_calls()
        ],
    )
    bridge.subscribe(relay.publisher.on_event)
    relay.start()
    return relay
