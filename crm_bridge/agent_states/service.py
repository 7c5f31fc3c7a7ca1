"""The agent-state service: one :class:`~telephony.queue_members.QueueMembersLink` on the main
server, the state of every agent derived from it, the history written on each change, the
after-call work timers, and what the agent page asks for (login, logout, pause, ready).

After-call work: when a member's call in a queue ends (``AgentComplete``), the agent is
paused in that queue with :data:`~crm_bridge.agent_states.domain.AFTER_CALL_REASON` for the
queue's ``after_call_seconds``; the timer's end or Ready unpauses them. Nothing rings an agent
in after-call work, since Asterisk itself holds the pause.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.agent_states import store
from crm_bridge.agent_states.domain import (
    AFTER_CALL_REASON,
    AgentState,
    AgentStatus,
    agent_status,
    extension_of,
)
from telephony.ami_connection import AmiConfig
from telephony.queue_members import CALL_DONE, MEMBER_EVENTS, MemberState, QueueMembersLink

log = logging.getLogger(__name__)

UNKNOWN_QUEUE = "没有这个队列 / No such queue"
NOT_LOGGED_IN = "请先登录队列 / Log into a queue first"
UNKNOWN_REASON = "请选择列表中的暂停原因 / Choose a pause reason from the list"
NO_EXTENSION = "您的账号没有分机 / Your account has no extension"


class AgentStateError(Exception):
    """A request the agent's state does not allow; ``field`` is the form field it is about."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class AgentNow:
    extension: str
    status: AgentStatus
    since: float
    """``time.time()`` at which the state began."""
    members: tuple[MemberState, ...]


Listener = Callable[[Mapping[str, str] | None], None]


class AgentStates:
    def __init__(
        self,
        config: AmiConfig,
        sessions: sessionmaker[Session],
        interface_template: str,
        state_interface_template: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sessions = sessions
        self.interface_template = interface_template
        self.state_interface_template = state_interface_template
        self._clock = clock
        self.link = QueueMembersLink(config, self._on_change, clock)
        self._now: dict[str, AgentNow] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self._listeners: list[Listener] = []
        self.rules: dict[str, store.QueueRules] = {}
        self._history = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-history")
        """Writes the state history off the event loop, in order (one thread): a commit
        waits for the disk, and the loop must not, with pops to send."""
        self._history_due: list[AgentNow] = []
        self._history_write_asked = False
        self._history_written: Future[None] | None = None
        """The last write handed to the thread: once it is done, every earlier one is."""

    # -- lifecycle

    async def start(self) -> None:
        with self.sessions() as session:
            self.rules = store.queue_rules(session)
            for agent, change in store.last_changes(session).items():
                status = AgentStatus(AgentState(change.state), change.reason, tuple(change.queues))
                self._now[agent] = AgentNow(agent, status, change.at.timestamp(), ())
        await self.link.start()

    async def stop(self) -> None:
        """End every after-call work this service started: no agent is left paused by a
        bridge that is gone."""
        for (extension, queue), timer in list(self._timers.items()):
            timer.cancel()
            if self.link.connected:
                await self._send_pause(self.interface(extension), False, "", queue)
        self._timers.clear()
        await self.link.stop()
        self._write_history()
        self._history.shutdown(wait=True)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- reading

    def interface(self, extension: str) -> str:
        return self.interface_template.format(extension=extension)

    def agents(self) -> dict[str, AgentNow]:
        return dict(self._now)

    def of(self, extension: str) -> AgentNow:
        return self._now.get(extension) or AgentNow(extension, agent_status([]), self._clock(), ())

    def queues(self) -> list[str]:
        return sorted(self.link.board.queues)

    # -- what the agent page asks for

    async def login(self, extension: str, queues: list[str], name: str) -> None:
        self._check_queues(queues)
        for queue in queues:
            penalty = self.rules.get(queue, store.QueueRules()).penalty
            await self.link.add(
                queue,
                self.interface(extension),
                self.state_interface_template.format(extension=extension),
                name,
                penalty,
            )

    async def logout(self, extension: str, queues: list[str]) -> None:
        self._check_queues(queues)
        for queue in queues:
            self._cancel_timer(extension, queue)
            await self.link.remove(queue, self.interface(extension))

    async def pause(self, extension: str, reason: str) -> None:
        if not self._members(extension):
            raise AgentStateError("reason", NOT_LOGGED_IN)
        with self.sessions() as session:
            if reason not in store.active_reasons(session):
                raise AgentStateError("reason", UNKNOWN_REASON)
        for queue in list(self._timers_of(extension)):
            self._cancel_timer(extension, queue)
        await self.link.pause(self.interface(extension), True, reason)

    async def ready(self, extension: str) -> None:
        if not self._members(extension):
            raise AgentStateError("queues", NOT_LOGGED_IN)
        for queue in list(self._timers_of(extension)):
            self._cancel_timer(extension, queue)
        await self.link.pause(self.interface(extension), False, "")

    def _check_queues(self, queues: list[str]) -> None:
        known = self.link.board.queues
        if not queues or any(queue not in known for queue in queues):
            raise AgentStateError("queues", UNKNOWN_QUEUE)

    def _members(self, extension: str) -> list[MemberState]:
        return self.link.board.of_interface(self.interface(extension))

    # -- after-call work

    def _timers_of(self, extension: str) -> list[str]:
        return [queue for (agent, queue) in self._timers if agent == extension]

    def _cancel_timer(self, extension: str, queue: str) -> None:
        timer = self._timers.pop((extension, queue), None)
        if timer is not None:
            timer.cancel()

    def _start_after_call_work(self, extension: str, member: MemberState) -> None:
        seconds = self.rules.get(member.queue, store.QueueRules()).after_call_seconds
        if seconds <= 0 or member.paused:
            return
        loop = asyncio.get_running_loop()
        loop.create_task(self._send_pause(member.interface, True, AFTER_CALL_REASON, member.queue))
        self._cancel_timer(extension, member.queue)
        self._timers[(extension, member.queue)] = loop.call_later(
            seconds, self._end_after_call_work, extension, member
        )

    def _end_after_call_work(self, extension: str, member: MemberState) -> None:
        self._timers.pop((extension, member.queue), None)
        current = self.link.board.members.get((member.queue, member.interface))
        if current is not None and current.paused and current.reason == AFTER_CALL_REASON:
            asyncio.get_running_loop().create_task(
                self._send_pause(member.interface, False, "", member.queue)
            )

    async def _send_pause(self, interface: str, paused: bool, reason: str, queue: str) -> None:
        try:
            await self.link.pause(interface, paused, reason, queue)
        except Exception as exc:  # logged: the state read back from Asterisk stays the truth
            log.warning("QueuePause %s in %s failed: %s", interface, queue, exc)

    # -- from Asterisk

    def _on_change(self, event: Mapping[str, str] | None) -> None:
        if event is None:
            self._adopt_after_call_work()
        elif event.get("Event") == CALL_DONE:
            self._after_call(event)
        self._reread(self._extensions_touched(event))
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("agent-state listener failed")

    def _extensions_touched(self, event: Mapping[str, str] | None) -> set[str] | None:
        """The agents whose state ``event`` may change: the one of a member event, none for a
        caller joining or leaving; None (every agent) after the board was read anew. Events
        come by the thousand in a busy minute, so only those agents are looked at again."""
        if event is None:
            return None
        if event.get("Event") not in MEMBER_EVENTS:
            return set()
        extension = extension_of(event.get("Interface", ""), self.interface_template)
        return {extension} if extension is not None else set()

    def _reread(self, extensions: set[str] | None) -> None:
        """Each of these agents' state from the board (every agent's for None); a change is
        timed from now and goes into the state history."""
        by_agent: dict[str, list[MemberState]] = {}
        members = self.link.board.members.values()
        if extensions is not None:  # a member event: only its agent's rows, found by interface
            interfaces = {self.interface_template.replace("{extension}", e) for e in extensions}
            members = [member for member in members if member.interface in interfaces]
        for member in members:
            extension = extension_of(member.interface, self.interface_template)
            if extension is not None:
                by_agent.setdefault(extension, []).append(member)
        now = self._clock()
        for extension in set(by_agent) | (set(self._now) if extensions is None else extensions):
            members = by_agent.get(extension, [])
            status = agent_status(members)
            old = self._now.get(extension)
            if old is None or old.status != status:
                self._now[extension] = AgentNow(extension, status, now, tuple(members))
                self._history_due.append(self._now[extension])
            else:
                self._now[extension] = AgentNow(extension, status, old.since, tuple(members))
        if self._history_due and not self._history_write_asked:
            self._history_write_asked = True
            asyncio.get_running_loop().call_soon(self._write_history)

    def _write_history(self) -> None:
        """Hand the changes of this turn of the event loop to the history's thread at once
        (one transaction for fifty agents ringing together, not fifty)."""
        self._history_write_asked = False
        changed, self._history_due = self._history_due, []
        if changed:
            self._history_written = self._history.submit(self._store, changed, datetime.now(UTC))

    async def history_written(self) -> None:
        """Return once every change seen so far is in the state history: a page that shows
        the history (reloaded because the state changed) reads it next."""
        self._write_history()
        if self._history_written is not None:
            await asyncio.wrap_future(self._history_written)

    def _after_call(self, event: Mapping[str, str]) -> None:
        interface = event.get("Interface", "")
        extension = extension_of(interface, self.interface_template)
        member = self.link.board.members.get((event.get("Queue", ""), interface))
        if extension is not None and member is not None:
            self._start_after_call_work(extension, member)

    def _adopt_after_call_work(self) -> None:
        """After a (re)connect: an after-call work found in Asterisk with no timer here (the
        bridge restarted during it) gets its queue's full time again, then ends."""
        loop = asyncio.get_running_loop()
        for member in self.link.board.members.values():
            extension = extension_of(member.interface, self.interface_template)
            key = (extension or "", member.queue)
            if extension is None or key in self._timers:
                continue
            if member.paused and member.reason == AFTER_CALL_REASON:
                seconds = self.rules.get(member.queue, store.QueueRules()).after_call_seconds
                self._timers[key] = loop.call_later(
                    seconds, self._end_after_call_work, extension, member
                )

    def _store(self, changed: list[AgentNow], at: datetime) -> None:
        try:
            with self.sessions.begin() as session:
                for agent in changed:
                    store.record_change(session, agent.extension, agent.status, at)
        except Exception:  # logged; the state itself, read from Asterisk, is unharmed
            log.exception("agent state history not written for %s",
                          ", ".join(a.extension for a in changed))  # fmt: skip

    def reload_rules(self) -> None:
        with self.sessions() as session:
            self.rules = store.queue_rules(session)
