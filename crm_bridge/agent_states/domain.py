"""An agent's state, derived from their queue memberships as Asterisk reports them.

The memberships are the truth (a pause made from a phone or another AMI client shows too);
after-call work is a pause with :data:`AFTER_CALL_REASON`, so it also survives a restart of the
bridge. States, most telling first: on a call, after-call work, paused (in every queue), ready,
logged out (in no queue).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from telephony.queue_members import MemberState


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    READY = "ready"
    ON_CALL = "on_call"
    AFTER_CALL_WORK = "after_call_work"
    PAUSED = "paused"


AFTER_CALL_REASON = "话后处理"
"""The QueuePause reason of after-call work; admins cannot take it for a pause reason."""

STATE_LABELS = {
    AgentState.LOGGED_OUT: "未登录 Logged out",
    AgentState.READY: "就绪 Ready",
    AgentState.ON_CALL: "通话中 On a call",
    AgentState.AFTER_CALL_WORK: "话后处理 After-call work",
    AgentState.PAUSED: "暂停 Paused",
}


@dataclass(frozen=True)
class AgentStatus:
    """What an agent is doing now, with the queues they are in."""

    state: AgentState
    reason: str
    queues: tuple[str, ...]

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]


def agent_status(members: list[MemberState]) -> AgentStatus:
    """The state of one agent from their memberships (one per queue)."""
    queues = tuple(sorted(m.queue for m in members))
    if not members:
        return AgentStatus(AgentState.LOGGED_OUT, "", queues)
    if any(m.busy for m in members):
        return AgentStatus(AgentState.ON_CALL, "", queues)
    if any(m.paused and m.reason == AFTER_CALL_REASON for m in members):
        return AgentStatus(AgentState.AFTER_CALL_WORK, AFTER_CALL_REASON, queues)
    if all(m.paused for m in members):
        return AgentStatus(AgentState.PAUSED, members[0].reason, queues)
    return AgentStatus(AgentState.READY, "", queues)


def extension_of(interface: str, template: str) -> str | None:
    """The extension in a member interface made from ``template`` (``Local/{extension}@agents/n``
    and ``Local/1001@agents/n`` give ``1001``); None when it is not one."""
    head, sep, tail = template.partition("{extension}")
    if not sep or not interface.startswith(head) or not interface.endswith(tail):
        return None
    extension = interface[len(head) : len(interface) - len(tail)]
    return extension if extension.isascii() and extension.isalnum() else None
