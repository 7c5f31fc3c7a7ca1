"""Domain events the call tracker emits, and the call record it keeps.

Everything outside ``telephony`` subscribes to these; nobody outside looks at raw AMI events.
Times are UTC epoch seconds (floats) taken from the AMI ``Timestamp`` header, or from the
moment the frame arrived when Asterisk sent none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Disposition(StrEnum):
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    FAILED = "failed"


class EndReason(StrEnum):
    """Why the tracker closed a call."""

    HANGUP = "hangup"
    """Every channel of the call hung up while we watched."""
    LOST_WHILE_DISCONNECTED = "lost_while_disconnected"
    """The call was gone when the bridge resynced after a reconnect; its end time is the resync."""
    PBX_RESTART = "pbx_restart"
    """Asterisk hung the call up because it was shutting down or restarting (a
    ``SoftHangupRequest`` with Cause 4, or the call was gone after its ``Shutdown``)."""


@dataclass(slots=True)
class CallRecord:
    """What the tracker knows of one call (all legs sharing one Linkedid)."""

    linkedid: str
    server: str
    direction: Direction | None = None
    caller: str | None = None
    caller_name: str | None = None
    callee: str | None = None
    queue: str | None = None
    agent: str | None = None
    agent_interface: str | None = None
    offered_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    disposition: Disposition | None = None
    hangup_cause: int | None = None
    hangup_cause_text: str | None = None
    recording_path: str | None = None
    campaign: str | None = None
    route: str | None = None
    """The label of the routing decision the dialplan got before Queue() (``CC_ROUTE``)."""
    survey_score: int | None = None
    """The customer's satisfaction score, 1-5 (``CC_SURVEY_SCORE`` on the customer's channel)."""
    talk_ended_at: float | None = None
    """When the talk ended before the call did: the satisfaction survey began (``CC_SURVEY``)."""
    originate_action_id: str | None = None
    transferred_to: str | None = None
    agents_rung: list[str] = field(default_factory=list)
    end_reason: EndReason | None = None

    def snapshot(self) -> CallRecord:
        """A copy that later events of the call will not change."""
        return replace(self, agents_rung=list(self.agents_rung))

    @property
    def wait_seconds(self) -> float | None:
        """Seconds from offer to answer, or to the end of an unanswered call."""
        if self.offered_at is None:
            return None
        until = self.answered_at if self.answered_at is not None else self.ended_at
        return None if until is None else round(max(0.0, until - self.offered_at), 3)

    @property
    def talk_seconds(self) -> float | None:
        """Answer to hang-up, or to the start of the satisfaction survey when one followed."""
        if self.answered_at is None or self.ended_at is None:
            return None if self.answered_at is not None else 0.0
        until = min(self.ended_at, self.talk_ended_at or self.ended_at)
        return round(max(0.0, until - self.answered_at), 3)


@dataclass(frozen=True, slots=True)
class CallOffered:
    call: CallRecord
    at: float


@dataclass(frozen=True, slots=True)
class AgentRinging:
    call: CallRecord
    agent: str
    interface: str
    at: float


@dataclass(frozen=True, slots=True)
class AgentRingStopped:
    """An agent's device stopped ringing without that agent taking the call."""

    call: CallRecord
    agent: str
    at: float


@dataclass(frozen=True, slots=True)
class CallAnswered:
    """An agent (inbound) or the callee (outbound) took the call; repeats for a transfer target."""

    call: CallRecord
    agent: str | None
    at: float


@dataclass(frozen=True, slots=True)
class CallTransferred:
    call: CallRecord
    from_agent: str | None
    to: str
    kind: str
    at: float


@dataclass(frozen=True, slots=True)
class RecordingStarted:
    call: CallRecord
    path: str
    at: float


@dataclass(frozen=True, slots=True)
class CallEnded:
    call: CallRecord
    at: float


DomainEvent = (
    CallOffered
    | AgentRinging
    | AgentRingStopped
    | CallAnswered
    | CallTransferred
    | RecordingStarted
    | CallEnded
)
