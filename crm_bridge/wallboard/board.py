"""What the wallboard shows, kept current and pushed to every open screen.

The queue side (waiting callers, members) comes from the agent-state service's
:class:`~telephony.queue_members.QueueBoard`; each agent's current call from the call tracker's
domain events (``CallAnswered``/``CallEnded``); the day figures from the call log
(:mod:`crm_bridge.wallboard.figures`), read again after each call ends and every
:data:`REFRESH_SECONDS` (the 30-minute window slides). A change is pushed once per turn of the
event loop, however many events caused it, so a screen moves within the event's own turn.

While no screen is open nothing is read from the database: the figures and the customers' names
wait for the first screen that opens (their reads on worker threads took the GIL from the event
loop, and every pop waited for it, ``bench/pop_latency.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.agent_states.domain import AFTER_CALL_REASON, STATE_LABELS
from crm_bridge.agent_states.service import AgentStates
from crm_bridge.agent_states.store import QueueRules
from crm_bridge.wallboard.figures import QueueDay, customer_name, day_figures
from telephony.call_events import CallAnswered, CallEnded, DomainEvent

log = logging.getLogger(__name__)

REFRESH_SECONDS = 30.0
FIGURES_GAP_SECONDS = 1.0
"""While calls keep ending, the day figures are read again at most this often: read after
each one, even one read at a time, they kept a core busy at fifty calls a second, and the pops
waited for it on a busy machine. A lone call's end is counted at once."""
MAX_QUEUED_FRAMES = 8
"""A screen that falls this far behind gets only the latest frame (each is the whole board)."""


@dataclass(frozen=True)
class CurrentCall:
    linkedid: str
    customer: str
    queue: str
    since: float
    number: str | None = None
    """The caller's number as the archive keeps it, until the customer's name is read."""


class Wallboard:
    def __init__(self, states: AgentStates, sessions: sessionmaker[Session], zone: tzinfo,
                 logged: Callable[[], Awaitable[None]], to_e164: Callable[[str], str | None],
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        """``logged`` returns once every call that ended is in the call log (the bridge's
        ``drain``): the day figures are read after it. ``to_e164`` reads a caller's number
        as the archive keeps it, to show the customer's name."""
        self.states = states
        self.sessions = sessions
        self.zone = zone
        self._clock = clock
        self._logged = logged
        self._to_e164 = to_e164
        self.calls: dict[str, CurrentCall] = {}
        self.day: dict[str, QueueDay] = {}
        self._screens: set[asyncio.Queue[dict[str, Any]]] = set()
        self._push_due = False
        self._refresher: asyncio.Task[None] | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._figures_stale = False
        states.subscribe(self._on_queue_change)

    async def start(self) -> None:
        await self.refresh_figures()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def stop(self) -> None:
        for task in (self._refresher, self._refreshing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    # -- screens

    def open_screen(self) -> asyncio.Queue[dict[str, Any]]:
        screen: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED_FRAMES)
        self._screens.add(screen)
        screen.put_nowait(self.snapshot())
        if len(self._screens) == 1:  # the first screen: read what waited for one
            if self._figures_stale:
                self._refresh_after_logging()
            for agent, current in self.calls.items():
                self._name_later(agent, current)
        return screen

    async def current(self) -> dict[str, Any]:
        """The board now, for a reader without a screen (``GET /wallboard/now``): what waited
        for a screen is read first."""
        if not self._screens:
            if self._figures_stale:
                self._figures_stale = False
                await self._logged()
                await self.refresh_figures()
            pending = [(agent, call) for agent, call in self.calls.items() if call.number]
            named = (self._name_customer(agent, call) for agent, call in pending)
            for failed in await asyncio.gather(*named, return_exceptions=True):
                if isinstance(failed, Exception):  # the board shows the number instead
                    log.warning("wallboard: a customer's name could not be read: %s", failed)
        return self.snapshot()

    def close_screen(self, screen: asyncio.Queue[dict[str, Any]]) -> None:
        self._screens.discard(screen)

    def push(self) -> None:
        if self._push_due:
            return
        self._push_due = True
        asyncio.get_running_loop().call_soon(self._send)

    def _send(self) -> None:
        self._push_due = False
        if not self._screens:
            return
        frame = self.snapshot()
        for screen in self._screens:
            if screen.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        screen.get_nowait()
            screen.put_nowait(frame)

    # -- inputs

    def _on_queue_change(self, _event: Mapping[str, str] | None) -> None:
        self.push()

    def on_call_event(self, event: DomainEvent) -> None:
        if isinstance(event, CallAnswered) and event.agent:
            call = event.call
            customer = call.caller_name or call.caller or ""
            number = self._to_e164(call.caller or "")
            current = CurrentCall(call.linkedid, customer, call.queue or "", self._clock(), number)
            self.calls[event.agent] = current
            self.push()
            if self._screens:
                self._name_later(event.agent, current)
        elif isinstance(event, CallEnded):
            for agent, current in list(self.calls.items()):
                if current.linkedid == event.call.linkedid:
                    del self.calls[agent]
            self.push()
            self._refresh_after_logging()

    def _name_later(self, agent: str, current: CurrentCall) -> None:
        if current.number:
            asyncio.get_running_loop().create_task(self._name_customer(agent, current))

    async def _name_customer(self, agent: str, current: CurrentCall) -> None:
        loop = asyncio.get_running_loop()
        name = await loop.run_in_executor(None, self._read_name, current.number)
        if self.calls.get(agent) == current:
            self.calls[agent] = replace(current, customer=name or current.customer, number=None)
            if name:
                self.push()

    def _read_name(self, number: str) -> str | None:
        with self.sessions() as session:
            return customer_name(session, number)

    def _refresh_after_logging(self) -> None:
        """Read the day figures again once the calls that ended are logged. One read at a
        time: calls that end during a read are counted by one more read after it, not by a
        read each (fifty calls ending together cost two queries, not fifty on the threads the
        pops' lookups also use)."""
        self._figures_stale = True
        if not self._screens:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_while_stale())

    async def _refresh_while_stale(self) -> None:
        while self._figures_stale:
            self._figures_stale = False
            await self._logged()
            await self.refresh_figures()
            if self._figures_stale:  # calls keep ending: read again, but not at once
                await asyncio.sleep(FIGURES_GAP_SECONDS)

    async def refresh_figures(self) -> None:
        """Read the day figures again (on a worker thread: a query, not the event loop)."""
        now = datetime.now(UTC)
        loop = asyncio.get_running_loop()
        try:
            self.day = await loop.run_in_executor(None, self._read_figures, now)
        except Exception:  # logged; the board keeps the last figures
            log.exception("wallboard figures could not be read")
            return
        self.push()

    def _read_figures(self, now: datetime) -> dict[str, QueueDay]:
        with self.sessions() as session:
            return day_figures(session, self.zone, now)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            if self._screens:
                await self.refresh_figures()
            else:
                self._figures_stale = True

    # -- the frame

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        board = self.states.link.board
        queues = []
        for name in sorted(board.queues | set(self.day)):
            rules = self.states.rules.get(name, QueueRules())
            members = [m for (queue, _), m in board.members.items() if queue == name]
            waits = [now - c.since for c in board.waiting.values() if c.queue == name]
            after_call = [m for m in members if m.paused and m.reason == AFTER_CALL_REASON]
            day = self.day.get(name, QueueDay())
            longest = max(waits, default=0.0)
            queues.append({
                "queue": name,
                "waiting": len(waits),
                "longest_wait": round(longest, 1),
                "logged_in": len(members),
                "ready": sum(1 for m in members
                             if not m.paused and not m.busy and not m.unavailable),
                "on_call": sum(1 for m in members if m.busy),
                "after_call_work": sum(1 for m in after_call if not m.busy),
                "paused": sum(1 for m in members
                              if m.paused and not m.busy and m.reason != AFTER_CALL_REASON),
                "answered": day.answered,
                "abandoned": day.abandoned,
                "service_level_today": day.service_level_today,
                "service_level_recent": day.service_level_recent,
                "target_seconds": rules.service_level_seconds,
                "alert_waiting": len(waits) >= rules.waiting_alert,
                "alert_longest_wait": longest >= rules.longest_wait_alert_seconds,
            })  # fmt: skip
        agents = []
        for extension, agent in sorted(self.states.agents().items()):
            call = self.calls.get(extension)
            agents.append({
                "agent": extension,
                "state": str(agent.status.state),
                "label": STATE_LABELS[agent.status.state],
                "reason": agent.status.reason,
                "since": agent.since,
                "queues": list(agent.status.queues),
                "customer": call.customer if call else "",
                "call_since": call.since if call else None,
                "linkedid": call.linkedid if call else None,
                "call_queue": call.queue if call else "",
            })  # fmt: skip
        return {"now": now, "connected": self.states.link.connected,
                "queues": queues, "agents": agents}  # fmt: skip
