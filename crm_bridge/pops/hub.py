"""Screen pops: the bridge's domain events turned into frames on the agents' WebSockets.

:class:`PopHub` subscribes to :class:`~crm_bridge.calls.bridge.BridgeService`. When an agent's
phone rings it looks the caller up (once per call however many agents are rung) and pushes a
``pop`` frame to every open page of the users who hold that agent's extension; what happens
next to the call (answered, missed, transferred, ended) follows as ``update`` frames to the
pages that have the call's card. A page only ever gets frames for calls
that rang one of its user's own extensions. A call the agent placed (a click-to-call, a preview
campaign's dial) rang the agent's phone through the Originate, which no queue or dial announces:
its card pops on that agent's pages when the customer answers (:func:`rung_by_own_call`).

The lookup is made as soon as the call is offered (the caller is known then, while the call is
still in the dialplan or the queue), so that the card is ready when an agent's phone starts
ringing; a call that never rings an agent only costs that one read.

The lookup runs on the event loop, not on threads. It is a handful of indexed reads (about a
millisecond with a million customers, ``bench/pop_latency.py``). Handed to a pool of threads
it was much slower: the threads and the loop then take turns at the GIL, and during a burst of
calls the loop waits for it behind every lookup thread, so every pop waited too (pop p50 at
10x the recorded pace went from about 240 ms on 4 threads to about 30 ms on the loop). The
calls offered in one turn of the loop are looked up together, in one batch of queries
(:meth:`PopHub._run_lookups`).

Frames of one call are sent in the order the events happened: each call has its own queue and
task, so the answer that arrives while the lookup is still running waits for the pop. Each page
has its own bounded outbox, so a slow browser delays nobody else; a page that falls that far
behind is dropped (its browser reconnects and gets the calls still going).

A campaign call (the tracker saw the Originate's ``CAMPAIGN`` variable) is looked up by its
Linkedid instead of its number: the dial attempt with that ChannelId names the campaign and the
customer who was called (a family phone is no question then), and the pop carries both, so the
agent's page can show the campaign and its return-visit form.

The AMI connection state is polled from the bridge and broadcast to every page when it
changes.

For latency measurements every frame carries ``sent_at`` (``time.time()`` when it was queued),
and ``pop`` / ``update`` frames carry ``ami_rx``: the ``time.monotonic()`` at which the bytes
of the AMI event that caused the frame arrived on the bridge's socket (``null`` for a card
given to a page that connected while the call was ringing, or a call found by a resync). A
client in the same process (``bench/pop_latency.py``) subtracts it from its own
``time.monotonic()`` on receipt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from crm_bridge.customers.card import PopLookup
from crm_bridge.customers.numbers import mask_phone
from crm_bridge.pops.lookups import CampaignLookup, CampaignPop, Lookup
from telephony.call_events import (
    AgentRinging,
    AgentRingStopped,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallRecord,
    CallTransferred,
    Direction,
    DomainEvent,
)

log = logging.getLogger(__name__)

OUTBOX_SIZE = 256
"""Frames a page may have waiting; past this the page is dropped and reconnects."""
STATE_POLL_SECONDS = 0.5
Frame = dict[str, Any]


def agent_key(extension: str) -> str:
    """The agent an extension or interface names: ``PJSIP/1001`` and
    ``Local/1001@agents/n`` are agent ``1001``, as the call tracker reports agents."""
    return extension.split("/", 1)[1].split("@", 1)[0] if "/" in extension else extension


def agents_of(extensions: Iterable[str]) -> frozenset[str]:
    return frozenset(agent_key(ext) for ext in extensions)


def number_to_look_up(call: CallRecord) -> str | None:
    """The other party: the caller of an inbound call, the callee of an outbound one."""
    return call.callee if call.direction is Direction.OUTBOUND else call.caller


def rung_by_own_call(event: DomainEvent) -> AgentRinging | None:
    """The ring of an agent-first outbound call (a click-to-call, a preview campaign's dial):
    the Originate rang the agent's own phone, so no queue or dial announced the agent as rung.
    When the customer answers, the card pops on that agent's pages as for a ring then: who
    picked up, and a campaign call's return-visit form. None for any other event."""
    if not isinstance(event, CallAnswered) or not event.agent:
        return None
    call = event.call
    if call.direction is not Direction.OUTBOUND or call.agent != event.agent:
        return None
    return AgentRinging(call=call, agent=event.agent, interface=call.agent_interface or "",
                        at=event.at)  # fmt: skip


def call_summary(call: CallRecord, to_e164: Callable[[str | None], str | None]) -> Frame:
    """The call as the card shows it: numbers in E.164, as in the call log (an extension
    stays as it is); ``route`` is the routing decision's label (``VIP · 优先接入``), if any."""
    return {
        "caller": to_e164(call.caller),
        "caller_name": call.caller_name,
        "callee": to_e164(call.callee),
        "direction": str(call.direction) if call.direction else None,
        "queue": call.queue,
        "route": call.route,
    }


@dataclass(eq=False)
class PopConnection:
    """One open agent page: whose it is, which calls it has cards for, what waits to be sent."""

    username: str
    extensions: tuple[str, ...]
    agents: frozenset[str]
    outbox: asyncio.Queue[Frame] = field(default_factory=lambda: asyncio.Queue(OUTBOX_SIZE))
    linkedids: set[str] = field(default_factory=set)
    dropped: bool = False

    def push(self, frame: Frame) -> None:
        if self.dropped:
            return
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.dropped = True
            log.warning("agent page of %s fell behind and was dropped", self.username)


@dataclass(eq=False)
class ActiveCall:
    """What the hub keeps of a call that rang an agent, until it ends."""

    linkedid: str
    call: CallRecord
    events: asyncio.Queue[Stamped] = field(default_factory=asyncio.Queue)
    lookup: Frame | None = None
    """The :class:`PopLookup` of the caller as JSON."""
    campaign: Frame | None = None
    """The :class:`CampaignOfCall` as JSON when this is a campaign's call."""
    rung: set[str] = field(default_factory=set)
    state: str = "ringing"
    by_agent: str | None = None
    missed_by: set[str] = field(default_factory=set)
    transferred_to: str | None = None
    task: asyncio.Task[None] | None = None


Stamped = tuple[DomainEvent, float | None]
"""A domain event and the ``time.monotonic()`` at which its AMI event arrived."""


@dataclass(frozen=True)
class Prefetch:
    """A lookup started when the call was offered, for this key (:func:`lookup_key`)."""

    key: str
    task: asyncio.Future[Frame]


def lookup_key(call: CallRecord) -> str | None:
    """What a call's lookup depends on: its campaign, else the number of the other party."""
    if call.campaign:
        return f"campaign:{call.campaign}"
    return number_to_look_up(call)


def _retrieve_exception(task: asyncio.Future[Frame]) -> None:
    if not task.cancelled():
        task.exception()


class PopHub:
    """Routes call events to the agents' pages. Create and use it on the event loop."""

    def __init__(
        self,
        lookup: Lookup,
        bridge_state: Callable[[], list[dict[str, object]]],
        clock: Callable[[], float] = time.time,
        received_at: Callable[[], float | None] = lambda: None,
        campaign_lookup: CampaignLookup | None = None,
        on_pop_latency: Callable[[float], None] | None = None,
        to_e164: Callable[[str | None], str | None] = lambda number: number,
    ) -> None:
        """``received_at`` tells, while :meth:`on_event` runs, when the AMI event behind the
        domain event arrived (``BridgeService.event_rx``); without ``campaign_lookup`` every
        call is looked up by its number. ``on_pop_latency`` hears, for each pop frame queued
        for a page, the seconds since its AMI event's bytes arrived (``/metrics``). ``to_e164``
        writes the numbers of the frames' call summary (``NumberRules.to_e164``)."""
        self._lookup = lookup
        self._to_e164 = to_e164
        self._campaign_lookup = campaign_lookup
        self._bridge_state = bridge_state
        self._clock = clock
        self._received_at = received_at
        self._on_pop_latency = on_pop_latency
        self._connections: set[PopConnection] = set()
        self._calls: dict[str, ActiveCall] = {}
        self._prefetched: dict[str, Prefetch] = {}
        self._lookups_due: list[tuple[CallRecord, asyncio.Future[Frame]]] = []
        self._state: Frame | None = None
        self._poller: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self._state = self._bridge_frame()
        self._poller = asyncio.create_task(self._poll_bridge_state(), name="pop-bridge-state")

    async def stop(self) -> None:
        tasks = [c.task for c in self._calls.values() if c.task is not None]
        tasks += [p.task for p in self._prefetched.values()]
        if self._poller is not None:
            tasks.append(self._poller)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._calls.clear()
        self._prefetched.clear()

    # ------------------------------------------------------------------ pages

    def connect(self, username: str, extensions: Iterable[str]) -> PopConnection:
        """Register a page; it gets at once the cards of calls still ringing its agents."""
        extensions = tuple(extensions)
        connection = PopConnection(username, extensions, agents_of(extensions))
        self._connections.add(connection)
        for active in self._calls.values():
            if active.lookup is not None and active.rung & connection.agents:
                connection.linkedids.add(active.linkedid)
                connection.push(self._pop_frame(active, connection, None))
        return connection

    def disconnect(self, connection: PopConnection) -> None:
        self._connections.discard(connection)

    def push_to_agent(self, agent: str, frame: Frame) -> None:
        """A frame about ``agent``'s own call (the live transcript) to that agent's pages."""
        for connection in self._connections:
            if agent_key(agent) in connection.agents:
                connection.push(frame)

    def bridge_state(self) -> Frame:
        """The AMI state now; pages hear of a change within ``STATE_POLL_SECONDS``."""
        self._refresh_state()
        assert self._state is not None
        return self._state

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def calls_held(self) -> int:
        """Calls the hub keeps anything of (a card, a lookup started at the offer); none once
        every call has ended."""
        return len(self._calls.keys() | self._prefetched.keys())

    # ------------------------------------------------------------------ events

    def on_event(self, event: DomainEvent, rx: float | None = None) -> None:
        """The bridge's subscriber: never blocks, only queues the event on its call. ``rx``
        is for an event that did not come through this bridge (``crm_bridge/pops/relay.py``):
        when its AMI event arrived, on this process's ``time.monotonic()`` clock."""
        linkedid = event.call.linkedid
        active = self._calls.get(linkedid)
        if active is None:
            if isinstance(event, CallOffered):
                self._prefetch(event.call)
            elif isinstance(event, CallEnded):
                self._prefetched.pop(linkedid, None)
            ring = event if isinstance(event, AgentRinging) else rung_by_own_call(event)
            if ring is None:
                return
            active = ActiveCall(linkedid, event.call)
            self._calls[linkedid] = active
            active.task = asyncio.create_task(self._run_call(active), name=f"pop-{linkedid}")
            if ring is not event:
                active.events.put_nowait((ring, self._received_at() if rx is None else rx))
        active.events.put_nowait((event, self._received_at() if rx is None else rx))

    async def _run_call(self, active: ActiveCall) -> None:
        """Handles one call's events in order until it ends."""
        try:
            while True:
                event, rx = await active.events.get()
                active.call = event.call
                if isinstance(event, AgentRinging):
                    await self._ringing(active, event, rx)
                elif isinstance(event, AgentRingStopped):
                    self._missed(active, event.agent, rx)
                elif isinstance(event, CallAnswered):
                    self._answered(active, event.agent, rx)
                elif isinstance(event, CallTransferred):
                    self._transferred(active, event, rx)
                elif isinstance(event, CallEnded):
                    self._ended(active, rx)
                    return
        except Exception:
            log.exception("screen pop of call %s failed", active.linkedid)
        finally:
            self._calls.pop(active.linkedid, None)
            self._prefetched.pop(active.linkedid, None)
            for connection in self._connections:
                connection.linkedids.discard(active.linkedid)

    async def _ringing(self, active: ActiveCall, event: AgentRinging, rx: float | None) -> None:
        if active.lookup is None:
            key = lookup_key(event.call)
            prefetch = self._prefetched.pop(active.linkedid, None)
            try:
                if prefetch is not None and prefetch.key == key:
                    found = await prefetch.task
                else:
                    found = await self._look_up(event.call)
            except Exception:
                number = number_to_look_up(event.call)
                log.exception("caller lookup failed for %s", mask_phone(number))
                found = {"lookup": PopLookup(kind="unknown").model_dump(mode="json")}
            active.lookup = found["lookup"]
            active.campaign = found.get("campaign")
        agent = agent_key(event.agent)
        active.rung.add(agent)
        active.missed_by.discard(agent)
        if active.state != "answered":
            active.state = "ringing"
        for connection in self._connections:
            if agent in connection.agents:
                connection.linkedids.add(active.linkedid)
                connection.push(self._pop_frame(active, connection, rx))
                if rx is not None and self._on_pop_latency and not connection.dropped:
                    self._on_pop_latency(time.monotonic() - rx)

    def _prefetch(self, call: CallRecord) -> None:
        """Start looking the caller up while the call has not reached an agent yet."""
        key = lookup_key(call)
        if key is None:
            return
        future = self._look_up(call)
        future.add_done_callback(_retrieve_exception)  # a failure is logged when awaited
        self._prefetched[call.linkedid] = Prefetch(key, future)

    def _look_up(self, call: CallRecord) -> asyncio.Future[Frame]:
        """``{"lookup": ..., "campaign": ...}`` as JSON, once the lookups asked for in this turn
        of the event loop have run (:meth:`_run_lookups`); a failure is raised where it is
        awaited."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Frame] = loop.create_future()
        if not self._lookups_due:
            loop.call_soon(self._run_lookups)
        self._lookups_due.append((call, future))
        return future

    def _run_lookups(self) -> None:
        """Every lookup asked for since the last run, made now, on the loop (see the module's
        docstring), the callers' numbers together in one batch.

        The bytes of one read from Asterisk are handled in one go, so the calls offered in a
        burst ask for their lookups in the same turn of the loop; one batch then reads all
        their cards with a few queries instead of a few per call (``bench/pop_latency.py``). A
        campaign call is looked up by its Linkedid; one whose attempt is not found, by its
        number.
        """
        due, self._lookups_due = self._lookups_due, []
        by_number: list[tuple[CallRecord, asyncio.Future[Frame]]] = []
        for call, future in due:
            if future.done():  # cancelled by stop()
                continue
            try:
                campaign_pop = self._campaign_pop(call)
            except Exception as exc:
                future.set_exception(exc)
                continue
            if campaign_pop is not None:
                future.set_result(campaign_pop.model_dump(mode="json"))
            else:
                by_number.append((call, future))
        if not by_number:
            return
        try:
            found = self._lookup([number_to_look_up(call) for call, _ in by_number])
        except Exception as exc:
            for _, future in by_number:
                future.set_exception(exc)
            return
        for (_, future), lookup in zip(by_number, found, strict=True):
            future.set_result({"lookup": lookup.model_dump(mode="json"), "campaign": None})

    def _campaign_pop(self, call: CallRecord) -> CampaignPop | None:
        if call.campaign and self._campaign_lookup is not None:
            return self._campaign_lookup(call.linkedid)
        return None

    def _missed(self, active: ActiveCall, agent: str, rx: float | None) -> None:
        agent = agent_key(agent)
        active.missed_by.add(agent)
        for connection in self._with_card(active):
            if agent in connection.agents:
                connection.push(self._update(active, "missed", rx))

    def _answered(self, active: ActiveCall, agent: str | None, rx: float | None) -> None:
        active.state = "answered"
        active.by_agent = agent_key(agent) if agent else None
        for connection in self._with_card(active):
            connection.push(self._update(active, "answered", rx, connection))

    def _transferred(self, active: ActiveCall, event: CallTransferred, rx: float | None) -> None:
        active.state = "transferred"
        active.transferred_to = event.to
        for connection in self._with_card(active):
            frame = self._update(active, "transferred", rx, connection)
            frame |= {"from_agent": event.from_agent, "to": event.to, "kind": event.kind}
            connection.push(frame)

    def _ended(self, active: ActiveCall, rx: float | None) -> None:
        active.state = "ended"
        for connection in self._with_card(active):
            connection.push(self._update(active, "ended", rx, connection))

    def _with_card(self, active: ActiveCall) -> list[PopConnection]:
        return [c for c in self._connections if active.linkedid in c.linkedids]

    # ------------------------------------------------------------------ frames

    def _pop_frame(self, active: ActiveCall, connection: PopConnection, rx: float | None) -> Frame:
        assert active.lookup is not None
        missed = bool(active.missed_by & connection.agents) and active.state == "ringing"
        return {
            "type": "pop",
            "linkedid": active.linkedid,
            "state": "missed" if missed else active.state,
            "by_agent": active.by_agent,
            "mine": self._mine(active, connection),
            "call": call_summary(active.call, self._to_e164),
            "lookup": active.lookup,
            "campaign": active.campaign,
            "sent_at": self._clock(),
            "ami_rx": rx,
        }

    def _update(
        self,
        active: ActiveCall,
        state: str,
        rx: float | None,
        connection: PopConnection | None = None,
    ) -> Frame:
        frame: Frame = {
            "type": "update",
            "linkedid": active.linkedid,
            "state": state,
            "by_agent": active.by_agent,
            "mine": connection is not None and self._mine(active, connection),
            "sent_at": self._clock(),
            "ami_rx": rx,
        }
        if state == "ended":
            disposition = active.call.disposition
            frame["disposition"] = str(disposition) if disposition else None
        return frame

    @staticmethod
    def _mine(active: ActiveCall, connection: PopConnection) -> bool:
        return active.by_agent is not None and active.by_agent in connection.agents

    # ------------------------------------------------------------------ bridge state

    def _bridge_frame(self) -> Frame:
        servers = [{"server": s["server"], "state": s["state"]} for s in self._bridge_state()]
        states = {s["state"] for s in servers}
        overall = "connected" if states == {"connected"} else "disconnected"
        return {"type": "bridge", "state": overall, "servers": servers, "sent_at": self._clock()}

    async def _poll_bridge_state(self) -> None:
        while True:
            await asyncio.sleep(STATE_POLL_SECONDS)
            self._refresh_state()

    def _refresh_state(self) -> None:
        """Tell every page when the AMI state differs from what they were last told."""
        frame = self._bridge_frame()
        if self._state is not None and frame["servers"] == self._state["servers"]:
            return
        self._state = frame
        for connection in self._connections:
            connection.push(frame)
