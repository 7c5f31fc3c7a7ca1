"""The call tracker's state and types: what it keeps of each call, the dialplan facts it is
given, and the tables that read Asterisk's codes.

:class:`CallBook` holds the tracker's whole state (the calls in flight, which call each
channel belongs to, the calls recently ended); the rule modules beside this one build on it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from telephony.call_events import CallRecord, Direction, Disposition

Event = Mapping[str, str]

STATE_RING = "4"
OUTGOING_APPS = ("", "AppDial", "AppDial2")
STATE_UP = "6"
SOFTHANGUP_SHUTDOWN = "4"
RECORDING_VARIABLES = {"CC_RECFILE", "MIXMONITOR_FILENAME"}
CAMPAIGN_VARIABLES = {"CAMPAIGN", "CC_CAMPAIGN"}
ROUTE_VARIABLE = "CC_ROUTE"
"""The routing decision's label the dialplan sets before Queue() (``callbridge-route``)."""
SURVEY_VARIABLE = "CC_SURVEY_SCORE"
"""The satisfaction survey's score (``callbridge-survey``), taken from the customer's own
channel only."""
SURVEY_SCORES = frozenset("12345")
SURVEY_BEGUN_VARIABLE = "CC_SURVEY"
"""Set on the customer's channel as the survey begins: the talk ended there."""
CALL_VARIABLES = frozenset({ROUTE_VARIABLE, SURVEY_VARIABLE, SURVEY_BEGUN_VARIABLE})
"""The dialplan's facts about a call, kept on its record as they are set."""

DIAL_STATUS_OUTCOME = {
    "ANSWER": Disposition.ANSWERED,
    "BUSY": Disposition.BUSY,
    "NOANSWER": Disposition.NO_ANSWER,
    "CANCEL": Disposition.NO_ANSWER,
    "CONGESTION": Disposition.FAILED,
    "CHANUNAVAIL": Disposition.FAILED,
}
HANGUP_CAUSE_OUTCOME = {
    17: Disposition.BUSY,  # user busy
    18: Disposition.NO_ANSWER,  # no user responding
    19: Disposition.NO_ANSWER,  # no answer
    21: Disposition.FAILED,  # call rejected
    34: Disposition.FAILED,  # circuit congestion
    38: Disposition.FAILED,  # network out of order
    42: Disposition.FAILED,  # switch congestion
}
ORIGINATE_REASON_OUTCOME = {
    "3": Disposition.NO_ANSWER,
    "4": Disposition.ANSWERED,
    "5": Disposition.BUSY,
    "8": Disposition.FAILED,
}

def event_time(event: Event) -> float:
    """The event's own time: Asterisk's ``Timestamp`` header, else when we received it."""
    stamp = event.get("Timestamp")
    if stamp:
        try:
            return float(stamp)
        except ValueError:
            pass
    return float(event.get("_rx") or 0.0)


@dataclass(slots=True)
class CallState:
    """The tracker's working state for one call: the record plus what it needs to build it."""

    record: CallRecord
    origin: str
    origin_channel: str
    live: set[str] = field(default_factory=set)
    direction_known: bool = False
    customer_is_origin: bool = True
    """False when the origin is an agent's phone and the customer is the channel it dials."""
    customer_channel: str | None = None
    ringing: dict[str, str] = field(default_factory=dict)
    """agent -> interface, for devices ringing now."""
    device_agent: dict[str, str] = field(default_factory=dict)
    """dialled device Uniqueid -> agent."""
    dial_status: str | None = None
    customer_cause: int | None = None
    originate_reason: str | None = None
    origin_up_at: float | None = None
    """When the originated channel was answered, kept until the direction is known."""
    origin_dialled: str | None = None
    """The number an Originate dialled for the first channel, the callee if that channel
    turns out to be the customer's (not an agent's phone rung for a click-to-call)."""
    cut_by_pbx_at: float | None = None
    """When Asterisk began hanging the call up because it was shutting down."""
    last_rx: float = 0.0


@dataclass(frozen=True, slots=True)
class TrackerPolicy:
    """Dialplan facts the tracker cannot see in the events alone."""

    inbound_contexts: frozenset[str] = frozenset(
        {"from-customers", "from-trunk", "from-pstn", "from-external"}
    )
    """Contexts where customers' calls enter the dialplan."""
    agent_contexts: frozenset[str] = frozenset({"internal", "from-internal"})
    """Contexts where agents' phones place their calls."""
    remember_ended: int = 20_000
    """How many ended Linkedids to remember so late events of those calls are ignored."""


class CallBook:
    """The tracker's state: the calls in flight, keyed by Linkedid, the channels of each, and
    the calls ended lately; and how a call's outcome is read from it."""

    def __init__(self, server: str = "default", policy: TrackerPolicy | None = None) -> None:
        self.server = server
        self.policy = policy or TrackerPolicy()
        self._calls: dict[str, CallState] = {}
        self._channel_call: dict[str, str] = {}
        """Uniqueid -> Linkedid of the call it belongs to (a merged call re-points these)."""
        self._ended: OrderedDict[str, None] = OrderedDict()

    def _call_of(self, ev: Event) -> CallState | None:
        linkedid = self._channel_call.get(ev.get("Uniqueid", ""))
        if linkedid is None:
            return None
        call = self._calls[linkedid]
        rx = ev.get("_rx")
        if rx:
            call.last_rx = max(call.last_rx, float(rx))
        return call

    def _remember_ended(self, linkedid: str) -> None:
        self._ended[linkedid] = None
        while len(self._ended) > self.policy.remember_ended:
            self._ended.popitem(last=False)

    def _disposition(self, call: CallState) -> Disposition:
        record = call.record
        if record.direction is Direction.INBOUND:
            return Disposition.ANSWERED if record.agent else Disposition.ABANDONED
        if record.answered_at is not None:
            return Disposition.ANSWERED
        if call.dial_status in DIAL_STATUS_OUTCOME and call.dial_status != "ANSWER":
            return DIAL_STATUS_OUTCOME[call.dial_status]
        if call.customer_cause in HANGUP_CAUSE_OUTCOME:
            return HANGUP_CAUSE_OUTCOME[call.customer_cause]
        return ORIGINATE_REASON_OUTCOME.get(call.originate_reason or "", Disposition.FAILED)
