"""Queue members and waiting callers as Asterisk's app_queue reports them, in plain values.

:class:`QueueBoard` holds what a server's queues look like now: each member (queue and
interface) with its pause, its reason and whether it is on a call, and each caller waiting. It is
rebuilt from the ``QueueStatus`` action (``QueueMember`` and ``QueueEntry`` events) at every
login, so a pause made from a phone or another AMI client while the bridge was away shows, and
then kept current by the ``QueueMember*`` and ``QueueCaller*`` events. :class:`QueueMembersLink`
is the AMI session that does this and sends ``QueueAdd``/``QueueRemove``/``QueuePause`` (all
through :func:`~telephony.ami_codec.encode_action`, the one sanitiser).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from telephony.ami_codec import EventSieve
from telephony.ami_connection import AmiConfig, AmiConnection, AmiState

log = logging.getLogger(__name__)

MEMBER_EVENTS = frozenset(
    {"QueueMemberStatus", "QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved"}
)
CALLER_EVENTS = frozenset({"QueueCallerJoin", "QueueCallerLeave"})
CALL_DONE = "AgentComplete"
"""A member's queue call ended (``Queue``, ``Interface``): passed on as it is, for after-call
work (``InCall`` of ``QueueMemberStatus`` is no reliable edge: the device state may change
first)."""
QUEUE_EVENTS = MEMBER_EVENTS | CALLER_EVENTS | {CALL_DONE}
"""What :class:`QueueMembersLink` reads; its session drops every other event unparsed."""
SESSION_EVENTS = "agent,system"
"""The event classes the session logs in for: app_queue sends every event above in ``agent``;
``system`` brings ``FullyBooted``. Asterisk then sends this session none of a call's channel,
bridge or dial events, which would only be read and dropped on the bridge's event loop (a
queue call brings some forty of them, against a handful here). ``QueueStatus`` answers come
whatever the classes."""

IN_USE_STATUSES = frozenset({"2", "3", "6", "7", "8"})
"""Device states (``Status``) of a member whose phone is busy: in use, busy, ringing, ring in
use, on hold. ``5`` is unavailable (unregistered), ``1`` not in use."""


class QueueActionRefused(Exception):
    """Asterisk answered an action with ``Response: Error``; the message is Asterisk's."""


@dataclass(frozen=True)
class MemberState:
    """One member of one queue."""

    queue: str
    interface: str
    name: str
    state_interface: str
    penalty: int
    paused: bool
    reason: str
    in_call: bool
    device_status: str
    dynamic: bool

    @property
    def busy(self) -> bool:
        """On a call or ringing, by the queue's own count or the phone's device state."""
        return self.in_call or self.device_status in IN_USE_STATUSES

    @property
    def unavailable(self) -> bool:
        return self.device_status in {"4", "5"}


@dataclass(frozen=True)
class WaitingCaller:
    queue: str
    uniqueid: str
    caller_number: str
    since: float
    """``time.time()`` at which the caller joined the queue."""


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        return 0


def member_state(event: Mapping[str, str]) -> MemberState | None:
    """A ``QueueMember*`` event or a ``QueueMember`` of ``QueueStatus`` as a member state;
    None without a queue or interface. ``QueueStatus`` names the interface ``Location``."""
    queue = event.get("Queue", "")
    interface = event.get("Interface") or event.get("Location") or ""
    if not queue or not interface:
        return None
    return MemberState(
        queue=queue,
        interface=interface,
        name=event.get("MemberName") or event.get("Name") or interface,
        state_interface=event.get("StateInterface", ""),
        penalty=_int(event.get("Penalty")),
        paused=event.get("Paused") == "1",
        reason=event.get("PausedReason") or event.get("Reason") or "",
        in_call=event.get("InCall") == "1",
        device_status=event.get("Status", ""),
        dynamic=event.get("Membership", "dynamic") != "static",
    )


def waiting_caller(event: Mapping[str, str], now: float) -> WaitingCaller | None:
    """A ``QueueCallerJoin`` or a ``QueueEntry`` of ``QueueStatus`` (whose ``Wait`` says how
    long the caller has waited already)."""
    queue, uniqueid = event.get("Queue", ""), event.get("Uniqueid", "")
    if not queue or not uniqueid:
        return None
    return WaitingCaller(
        queue=queue,
        uniqueid=uniqueid,
        caller_number=event.get("CallerIDNum", ""),
        since=now - _int(event.get("Wait")),
    )


class QueueBoard:
    """The members and waiting callers of one server's queues, as last reported."""

    def __init__(self) -> None:
        self.members: dict[tuple[str, str], MemberState] = {}
        self.waiting: dict[str, WaitingCaller] = {}
        self.queues: set[str] = set()
        """Every queue Asterisk listed in the last ``QueueStatus``, with members or not."""

    def replace(self, events: list[Mapping[str, str]], now: float) -> None:
        """Start over from the events of a ``QueueStatus`` answer."""
        self.members.clear()
        self.waiting.clear()
        self.queues.clear()
        for event in events:
            kind = event.get("Event")
            if kind == "QueueParams" and event.get("Queue"):
                self.queues.add(event["Queue"])
            elif kind == "QueueMember" and (member := member_state(event)) is not None:
                self.members[(member.queue, member.interface)] = member
            elif kind == "QueueEntry" and (caller := waiting_caller(event, now)) is not None:
                self.waiting[caller.uniqueid] = caller

    def apply(self, event: Mapping[str, str], now: float) -> bool:
        """Apply one event; True if it changed what the board holds."""
        kind = event.get("Event", "")
        if kind in MEMBER_EVENTS:
            member = member_state(event)
            if member is None:
                return False
            key = (member.queue, member.interface)
            self.queues.add(member.queue)
            if kind == "QueueMemberRemoved":
                return self.members.pop(key, None) is not None
            changed = self.members.get(key) != member
            self.members[key] = member
            return changed
        if kind == "QueueCallerJoin":
            caller = waiting_caller(event, now)
            if caller is None:
                return False
            self.waiting[caller.uniqueid] = caller
            return True
        if kind == "QueueCallerLeave":
            return self.waiting.pop(event.get("Uniqueid", ""), None) is not None
        return False

    def of_interface(self, interface: str) -> list[MemberState]:
        return [m for (_, iface), m in sorted(self.members.items()) if iface == interface]


def _checked(response: Mapping[str, str], action: str) -> None:
    if response.get("Response") == "Error":
        raise QueueActionRefused(response.get("Message") or f"{action} refused")


class QueueMembersLink:
    """One AMI session that keeps a :class:`QueueBoard` and changes queue membership.

    ``on_change`` is called (on the event loop) after the board changed: with the event that
    changed it, or with ``None`` after a ``QueueStatus`` rebuilt it (first login, reconnect).
    """

    def __init__(
        self,
        config: AmiConfig,
        on_change: Callable[[Mapping[str, str] | None], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.board = QueueBoard()
        self._on_change = on_change
        self._clock = clock
        self._refresh: asyncio.Task[None] | None = None
        self.connection = AmiConnection(
            dataclasses.replace(config, events=SESSION_EVENTS, purpose="queue-members"),
            on_event=self._on_event,
            on_resync=self._on_resync,
            sieve=EventSieve(QUEUE_EVENTS),
        )

    @property
    def connected(self) -> bool:
        return self.connection.state is AmiState.CONNECTED

    async def start(self) -> None:
        await self.connection.start()

    async def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        await self.connection.stop()

    def _on_event(self, event: Mapping[str, str]) -> None:
        if self.board.apply(event, self._clock()) or event.get("Event") == CALL_DONE:
            self._on_change(event)

    def _on_resync(self, _channels: list, _started_at: float) -> None:
        self._refresh = asyncio.get_running_loop().create_task(self._refresh_logged())

    async def _refresh_logged(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # logged: the next reconnect reads the queues again
            log.warning("QueueStatus on %s failed: %s", self.connection.config.label, exc)

    async def refresh(self) -> None:
        """Read every queue's members and callers back from Asterisk (``QueueStatus``)."""
        response, events = await self.connection.send_list_action("QueueStatus")
        _checked(response, "QueueStatus")
        self.board.replace(events, self._clock())
        self._on_change(None)

    async def add(
        self, queue: str, interface: str, state_interface: str, name: str, penalty: int
    ) -> None:
        response = await self.connection.send_action(
            "QueueAdd",
            {
                "Queue": queue,
                "Interface": interface,
                "StateInterface": state_interface,
                "MemberName": name,
                "Penalty": penalty,
            },
        )
        _checked(response, "QueueAdd")

    async def remove(self, queue: str, interface: str) -> None:
        response = await self.connection.send_action(
            "QueueRemove", {"Queue": queue, "Interface": interface}
        )
        _checked(response, "QueueRemove")

    async def pause(self, interface: str, paused: bool, reason: str, queue: str = "") -> None:
        """Pause or unpause ``interface`` in ``queue`` (every queue when empty)."""
        headers: dict[str, str | int] = {"Interface": interface, "Paused": str(paused).lower()}
        if queue:
            headers["Queue"] = queue
        if reason:
            headers["Reason"] = reason
        response = await self.connection.send_action("QueuePause", headers)
        _checked(response, "QueuePause")
