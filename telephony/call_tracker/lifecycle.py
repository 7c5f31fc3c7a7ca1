"""The call tracker: AMI events in, calls and domain events out.

A pure reducer. ``CallTracker.feed(event)`` takes one AMI event (a ``dict`` of headers as
Asterisk spells them, plus ``_rx``, the receipt time) and returns the domain events it causes;
the tracker's fields are the whole state. No I/O, no clock, no logging of numbers: the output
depends only on the state and the event, so it is tested by replaying real traces.

How Asterisk shows a call, and what the tracker relies on (see ``telephony/traces/README.md``):

* Every leg of one call shares a ``Linkedid``; a call is keyed by it. Channels are keyed by
  ``Uniqueid``, never by order: identical runs deliver events in different orders.
* The *origin* is the call's first channel (its ``Uniqueid`` equals the ``Linkedid``). A channel
  that arrives from outside is created in state Ring (4); a channel Asterisk dials (Originate,
  Dial) is created Down (0). An incoming origin in an agent-phone context is an agent dialling
  out; any other incoming origin is a customer calling in.
* An originated call is outbound, unless its origin runs dialplan first in a customer-facing
  context (a call generator or call-back that plays the customer). Which context it runs first
  shows in its first ``Newexten``; a failed originate runs no dialplan at all.
* A queue attempt creates a Local pair; ``AgentCalled``/``AgentConnect`` name the member
  ``Interface``. A phone rung directly shows as a ``DialBegin`` to a non-Local channel. Both name
  the same agent (the extension), so a ring is announced once per agent.
* On a SIP trunk, busy and congestion both give ``OriginateResponse`` Reason 0: the outcome comes
  from ``DialEnd``'s ``DialStatus`` first, the customer channel's hangup ``Cause`` next, and the
  originate Reason last.
* The call ends when its last channel hangs up. Late events of an ended call (a ``Cdr`` after the
  ``Hangup``) are recognised and ignored.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from telephony.ami_codec import EventSieve
from telephony.call_events import (
    AgentRinging,
    AgentRingStopped,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallRecord,
    CallTransferred,
    Direction,
    Disposition,
    DomainEvent,
    EndReason,
    RecordingStarted,
)

Event = Mapping[str, str]

STATE_RING = "4"
OUTGOING_APPS = ("", "AppDial", "AppDial2")
STATE_UP = "6"
SOFTHANGUP_SHUTDOWN = "4"
UNKNOWN_IDS = {"", "<unknown>", "<none>", "unknown", "anonymous"}
RECORDING_VARIABLES = {"CC_RECFILE", "MIXMONITOR_FILENAME"}
CAMPAIGN_VARIABLES = {"CAMPAIGN", "CC_CAMPAIGN"}

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

_CHANNEL_SUFFIX = re.compile(r"-[0-9a-f]+(;[12])?$")


def agent_from_channel(channel: str) -> str:
    """``PJSIP/1001-0000004b`` -> ``1001``; ``SIP/1001`` -> ``1001``."""
    resource = channel.split("/", 1)[-1]
    return _CHANNEL_SUFFIX.sub("", resource).split("@", 1)[0]


def agent_from_interface(interface: str) -> str:
    """A queue member interface to the agent's extension.

    ``Local/1001@agents/n`` -> ``1001``; ``PJSIP/1001`` -> ``1001``.
    """
    resource = interface.split("/", 1)[-1]
    return resource.split("@", 1)[0].split("/", 1)[0]


def number_from_dial_string(dial_string: str) -> str:
    """``13900000001@carrier`` or ``carrier/13900000001`` -> ``13900000001``."""
    return dial_string.split("@", 1)[0].split("/")[-1]


def is_local(channel: str) -> bool:
    return channel.startswith("Local/")


def event_time(event: Event) -> float:
    """The event's own time: Asterisk's ``Timestamp`` header, else when we received it."""
    stamp = event.get("Timestamp")
    if stamp:
        try:
            return float(stamp)
        except ValueError:
            pass
    return float(event.get("_rx") or 0.0)


def _known(value: str | None) -> str | None:
    if value is None or value.strip().lower() in UNKNOWN_IDS:
        return None
    return value


@dataclass(slots=True)
class _Call:
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


class CallTracker:
    """Turns one AMI server's event stream into calls. See the module docstring."""

    def __init__(self, server: str = "default", policy: TrackerPolicy | None = None) -> None:
        self.server = server
        self.policy = policy or TrackerPolicy()
        self._calls: dict[str, _Call] = {}
        self._channel_call: dict[str, str] = {}
        """Uniqueid -> Linkedid of the call it belongs to (a merged call re-points these)."""
        self._ended: OrderedDict[str, None] = OrderedDict()
        self.skipped = 0
        """Events that could not be read: a header the handler needs is missing or malformed."""
        self._handlers = {
            "Newchannel": self._on_newchannel,
            "Newexten": self._on_newexten,
            "Newstate": self._on_newstate,
            "NewCallerid": self._on_caller_update,
            "QueueCallerJoin": self._on_queue_join,
            "AgentCalled": self._on_agent_called,
            "AgentRingNoAnswer": self._on_agent_ring_no_answer,
            "AgentConnect": self._on_agent_connect,
            "DialBegin": self._on_dial_begin,
            "DialEnd": self._on_dial_end,
            "VarSet": self._on_varset,
            "Cdr": self._on_cdr,
            "OriginateResponse": self._on_originate_response,
            "BlindTransfer": self._on_blind_transfer,
            "AttendedTransfer": self._on_attended_transfer,
            "SoftHangupRequest": self._on_soft_hangup_request,
            "Shutdown": self._on_shutdown,
            "Hangup": self._on_hangup,
        }

    # ----------------------------------------------------------------- public API

    @property
    def calls_in_flight(self) -> int:
        return len(self._calls)

    def active_calls(self) -> list[CallRecord]:
        return [c.record.snapshot() for c in self._calls.values()]

    def sieve(self) -> EventSieve:
        """What of an AMI stream this tracker reads: its events, and of VarSet the recording
        and campaign variables; everything else can be dropped before it is parsed."""
        return EventSieve(self._handlers, RECORDING_VARIABLES | CAMPAIGN_VARIABLES)

    def feed(self, event: Event) -> list[DomainEvent]:
        """Apply one AMI event; return the domain events it causes (often none)."""
        handler = self._handlers.get(event.get("Event", ""))
        if handler is None:
            return []
        try:
            return handler(event)
        except (KeyError, ValueError, TypeError):
            self.skipped += 1
            return []

    def feed_all(self, events: Iterable[Event]) -> list[DomainEvent]:
        out: list[DomainEvent] = []
        for event in events:
            out.extend(self.feed(event))
        return out

    def resync(self, channels: Iterable[Event], started_at: float) -> list[DomainEvent]:
        """Reconcile with a ``CoreShowChannels`` snapshot taken after a (re)connect.

        A call we knew whose channels are all gone ended while we were away: it is closed now,
        marked ``lost_while_disconnected``, with the resync time as its end (``pbx_restart`` and
        the time Asterisk began cutting it, when its ``Shutdown`` was seen). Channels unknown to
        us are adopted, so a call that began while we were away (or before the bridge started)
        is tracked to its end, rebuilt from what the snapshot shows of each of its channels
        (see :meth:`_rebuild`). Calls that saw an event after ``started_at`` are alive by that
        evidence and left alone.
        """
        snapshot = {ch["Uniqueid"]: ch for ch in channels if ch.get("Uniqueid")}
        # a call's first channel (its Uniqueid is the Linkedid) first: it tells the direction
        snapshot = dict(
            sorted(snapshot.items(), key=lambda item: item[1].get("Linkedid") != item[0])
        )
        out: list[DomainEvent] = []
        for linkedid, call in list(self._calls.items()):
            if call.last_rx >= started_at:
                continue
            gone = {u for u in call.live if u not in snapshot}
            for uniqueid in gone:
                call.live.discard(uniqueid)
                self._channel_call.pop(uniqueid, None)
            if not call.live and call.cut_by_pbx_at is not None:
                out.extend(self._end(linkedid, call.cut_by_pbx_at, EndReason.PBX_RESTART))
            elif not call.live:
                out.extend(self._end(linkedid, started_at, EndReason.LOST_WHILE_DISCONNECTED))
        adopted: dict[str, list[Event]] = {}
        for uniqueid, channel in snapshot.items():
            if uniqueid not in self._channel_call:
                out.extend(self._adopt(channel, started_at))
                if channel["Linkedid"] in self._calls:
                    adopted.setdefault(channel["Linkedid"], []).append(channel)
        for linkedid, channels in adopted.items():
            call = self._calls[linkedid]
            if channels[0]["Uniqueid"] == call.origin:  # a call new to us, not a leg of one
                out.extend(self._rebuild(call, channels, started_at))
        return out

    # ----------------------------------------------------------------- channel lifecycle

    def _on_newchannel(self, ev: Event) -> list[DomainEvent]:
        uniqueid, linkedid = ev["Uniqueid"], ev["Linkedid"]
        if uniqueid in self._channel_call or linkedid in self._ended:
            return []
        call = self._calls.get(linkedid)
        if call is None:
            return self._begin_call(ev, event_time(ev))
        self._channel_call[uniqueid] = linkedid
        call.live.add(uniqueid)
        call.last_rx = max(call.last_rx, float(ev.get("_rx") or 0.0))
        return []

    def _begin_call(self, ev: Event, at: float) -> list[DomainEvent]:
        uniqueid, linkedid = ev["Uniqueid"], ev["Linkedid"]
        record = CallRecord(linkedid=linkedid, server=self.server, offered_at=at)
        call = _Call(
            record=record, origin=uniqueid, origin_channel=ev.get("Channel", ""), live={uniqueid}
        )
        call.last_rx = float(ev.get("_rx") or 0.0)
        self._calls[linkedid] = call
        self._channel_call[uniqueid] = linkedid
        self._take_caller_id(call, ev)
        if ev.get("ChannelState") == STATE_RING and not is_local(ev.get("Channel", "")):
            context = ev.get("Context", "")
            if context in self.policy.agent_contexts:
                return self._decide(call, Direction.OUTBOUND, at, customer_is_origin=False)
            exten = _known(ev.get("Exten"))
            if exten and exten != "s":
                record.callee = exten
            return self._decide(call, Direction.INBOUND, at)
        return []

    def _adopt(self, ch: Event, at: float) -> list[DomainEvent]:
        """Take over a channel first seen in a resync snapshot."""
        uniqueid, linkedid = ch["Uniqueid"], ch["Linkedid"]
        if linkedid in self._ended:
            return []
        call = self._calls.get(linkedid)
        if call is not None:
            self._channel_call[uniqueid] = linkedid
            call.live.add(uniqueid)
            return []
        started = at - _hms_seconds(ch.get("Duration", ""))
        out = self._begin_call({**ch, "ChannelState": "", "_rx": str(at)}, started)
        call = self._calls[linkedid]
        context = ch.get("Context", "")
        if context in self.policy.agent_contexts:
            out += self._decide(call, Direction.OUTBOUND, started, customer_is_origin=False)
        elif _outgoing_line(ch):
            out += self._decide(call, Direction.OUTBOUND, started)
        elif context in self.policy.inbound_contexts or ch.get("Application") == "Queue":
            call.record.callee = _known(ch.get("Exten")) or call.record.callee
            out += self._decide(call, Direction.INBOUND, started)
        else:
            out += self._decide(call, Direction.OUTBOUND, started)
        if (
            ch.get("ChannelState") == STATE_UP
            and call.record.direction is Direction.OUTBOUND
            and call.customer_is_origin
        ):
            call.record.answered_at = started
        return out

    def _rebuild(self, call: _Call, channels: list[Event], at: float) -> list[DomainEvent]:
        """What a snapshot shows of a call first seen in it, its origin first: the queue its
        customer waits in (application ``Queue``), the agents' phones (the other channels that
        are not Local halves: rung, and answered when Up; each answered when it was created,
        the nearest a snapshot tells) and, for a call an agent's phone placed, the customer's
        channel and number (the agent's connected line). The domain events are those a watched
        call would have given, so the agents' pages keep their cards."""
        origin, others = channels[0], channels[1:]
        out: list[DomainEvent] = []
        if origin.get("Application") == "Queue":
            call.record.queue = origin.get("ApplicationData", "").split(",", 1)[0] or None
        for ch in others:
            channel = ch.get("Channel", "")
            if is_local(channel):
                continue
            since = at - _hms_seconds(ch.get("Duration", ""))
            up = ch.get("ChannelState") == STATE_UP
            if not call.customer_is_origin:
                call.customer_channel = ch["Uniqueid"]
                number = _known(origin.get("ConnectedLineNum")) or _known(ch.get("CallerIDNum"))
                call.record.callee = call.record.callee or number
                out += self._customer_answered(call, since) if up else []
                continue
            agent = agent_from_channel(channel)
            call.device_agent[ch["Uniqueid"]] = agent
            out += self._ringing(call, agent, _device_of(channel), since)
            out += self._agent_answered(call, agent, _device_of(channel), since) if up else []
        return out

    def _on_hangup(self, ev: Event) -> list[DomainEvent]:
        uniqueid = ev["Uniqueid"]
        linkedid = self._channel_call.pop(uniqueid, None)
        if linkedid is None:
            return []
        call = self._calls[linkedid]
        at = event_time(ev)
        call.live.discard(uniqueid)
        out: list[DomainEvent] = []
        if not call.direction_known:
            # An originated channel that never ran dialplan: a failed outbound attempt.
            out += self._decide(call, Direction.OUTBOUND, at)
        if self._is_customer_leg(call, uniqueid, ev.get("Channel", "")):
            self._take_cause(call, ev)
        agent = call.device_agent.get(uniqueid)
        if agent is not None and agent in call.ringing:
            out += self._ring_stopped(call, agent, at)
        if not call.live:
            reason = EndReason.HANGUP if call.cut_by_pbx_at is None else EndReason.PBX_RESTART
            out += self._end(linkedid, at, reason)
        return out

    def _on_soft_hangup_request(self, ev: Event) -> list[DomainEvent]:
        """Cause 4 (``AST_SOFTHANGUP_SHUTDOWN``): Asterisk hangs the channel up to shut down."""
        call = self._call_of(ev)
        if call is not None and ev.get("Cause") == SOFTHANGUP_SHUTDOWN:
            call.cut_by_pbx_at = call.cut_by_pbx_at or event_time(ev)
        return []

    def _on_shutdown(self, ev: Event) -> list[DomainEvent]:
        """Asterisk stops or restarts: every call still up is being cut by it. Their hangups
        may never reach us (the session ends with this event); the resync then closes them."""
        at = event_time(ev)
        for call in self._calls.values():
            call.cut_by_pbx_at = call.cut_by_pbx_at or at
        return []

    def _end(self, linkedid: str, at: float, reason: EndReason) -> list[DomainEvent]:
        call = self._calls.pop(linkedid)
        for uniqueid in call.live:
            self._channel_call.pop(uniqueid, None)
        record = call.record
        if record.direction is None:
            record.direction = Direction.OUTBOUND
        record.ended_at = at
        record.end_reason = reason
        record.disposition = self._disposition(call)
        self._remember_ended(linkedid)
        return [CallEnded(call=record, at=at)]

    def _remember_ended(self, linkedid: str) -> None:
        self._ended[linkedid] = None
        while len(self._ended) > self.policy.remember_ended:
            self._ended.popitem(last=False)

    # ----------------------------------------------------------------- direction

    def _decide(
        self, call: _Call, direction: Direction, at: float, customer_is_origin: bool = True
    ) -> list[DomainEvent]:
        """Fix the call's direction once and announce it."""
        if call.direction_known:
            return []
        call.direction_known = True
        call.record.direction = direction
        call.customer_is_origin = customer_is_origin
        if not customer_is_origin and call.origin_channel:
            call.record.agent = agent_from_channel(call.origin_channel)
            call.record.agent_interface = _device_of(call.origin_channel)
            call.record.caller = call.record.agent
        out: list[DomainEvent] = [
            CallOffered(call=call.record.snapshot(), at=call.record.offered_at or at)
        ]
        if customer_is_origin and call.record.callee is None:
            call.record.callee = call.origin_dialled
        if customer_is_origin and call.origin_up_at is not None:
            out += self._customer_answered(call, call.origin_up_at)
        return out

    def _on_newexten(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is None or call.direction_known or ev["Uniqueid"] != call.origin:
            return []
        if ev.get("Application", "").startswith("AppDial"):
            return []  # the "(Outgoing Line)" placeholder of a channel being dialled, not dialplan
        context = ev.get("Context", "")
        at = event_time(ev)
        if context in self.policy.inbound_contexts:
            call.record.callee = _known(ev.get("Extension") or ev.get("Exten"))
            return self._decide(call, Direction.INBOUND, at)
        if context in self.policy.agent_contexts:
            return self._decide(call, Direction.OUTBOUND, at, customer_is_origin=False)
        return self._decide(call, Direction.OUTBOUND, at)

    def _is_customer_leg(self, call: _Call, uniqueid: str, channel: str) -> bool:
        """The customer's channel, or the ``;2`` half of a Local channel that stands for it."""
        if not call.customer_is_origin:
            return uniqueid == call.customer_channel
        if uniqueid == call.origin:
            return True
        origin = call.origin_channel
        return origin.endswith(";1") and channel == origin[:-1] + "2"

    @staticmethod
    def _take_cause(call: _Call, ev: Event) -> None:
        """Keep the most telling hangup cause of the customer's leg (0 says nothing)."""
        cause = ev.get("Cause", "")
        if not cause.isdigit() or (call.customer_cause and int(cause) == 0):
            return
        call.customer_cause = int(cause)
        call.record.hangup_cause = call.customer_cause
        call.record.hangup_cause_text = ev.get("Cause-txt") or None

    # ----------------------------------------------------------------- caller id, queue, vars

    def _take_caller_id(self, call: _Call, ev: Event) -> None:
        record = call.record
        if ev.get("Uniqueid") != call.origin or not call.customer_is_origin:
            return
        if record.caller is None:
            record.caller = _known(ev.get("CallerIDNum"))
        if record.caller_name is None:
            record.caller_name = _known(ev.get("CallerIDName"))

    def _on_newstate(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is None:
            return []
        self._take_caller_id(call, ev)
        if ev.get("ChannelState") == STATE_UP and ev["Uniqueid"] == call.origin:
            return self._origin_answered(call, event_time(ev))
        return []

    def _on_caller_update(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is not None:
            self._take_caller_id(call, ev)
        return []

    def _on_queue_join(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is not None:
            call.record.queue = ev.get("Queue") or call.record.queue
            self._take_caller_id(call, ev)
        return []

    def _on_varset(self, ev: Event) -> list[DomainEvent]:
        variable = ev.get("Variable", "")
        if variable not in RECORDING_VARIABLES and variable not in CAMPAIGN_VARIABLES:
            return []
        call = self._call_of(ev)
        value = ev.get("Value", "")
        if call is None or not value:
            return []
        if variable in CAMPAIGN_VARIABLES:
            call.record.campaign = value
            return []
        return self._recording(call, value, event_time(ev))

    def _on_cdr(self, ev: Event) -> list[DomainEvent]:
        call = self._calls.get(ev.get("LinkedID") or ev.get("Linkedid") or "")
        if call is None:
            return []
        if ev.get("Campaign"):
            call.record.campaign = call.record.campaign or ev["Campaign"]
        if ev.get("Recording"):
            return self._recording(call, ev["Recording"], event_time(ev))
        return []

    def _recording(self, call: _Call, path: str, at: float) -> list[DomainEvent]:
        if call.record.recording_path is not None:
            return []
        call.record.recording_path = path
        return [RecordingStarted(call=call.record.snapshot(), path=path, at=at)]

    # ----------------------------------------------------------------- ringing and answer

    def _on_agent_called(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is None:
            return []
        interface = ev.get("Interface", "")
        call.record.queue = ev.get("Queue") or call.record.queue
        if ev.get("DestUniqueid"):
            call.device_agent[ev["DestUniqueid"]] = agent_from_interface(interface)
        return self._ringing(call, agent_from_interface(interface), interface, event_time(ev))

    def _on_agent_ring_no_answer(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is None:
            return []
        return self._ring_stopped(
            call, agent_from_interface(ev.get("Interface", "")), event_time(ev)
        )

    def _on_agent_connect(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is None:
            return []
        call.record.queue = ev.get("Queue") or call.record.queue
        interface = ev.get("Interface", "")
        return self._agent_answered(
            call, agent_from_interface(interface), interface, event_time(ev)
        )

    def _on_dial_begin(self, ev: Event) -> list[DomainEvent]:
        dest = ev.get("DestUniqueid", "")
        call = self._calls.get(ev.get("DestLinkedid", "")) or self._call_of(ev)
        if call is None or not dest:
            return []
        dest_channel = ev.get("DestChannel", "")
        at = event_time(ev)
        if "Channel" not in ev:
            # Originate dialling its first channel: the customer's number, unless that channel
            # is an agent's phone (click-to-call), which shows once the direction is known.
            if dest == call.origin:
                call.origin_dialled = number_from_dial_string(ev.get("DialString", ""))
                if call.direction_known and call.customer_is_origin:
                    call.record.callee = call.record.callee or call.origin_dialled
            return []
        if not call.customer_is_origin and ev.get("Uniqueid") == call.origin:
            # An agent's phone dialling the customer.
            call.customer_channel = dest
            if call.record.callee is None:
                call.record.callee = number_from_dial_string(ev.get("DialString", ""))
            return []
        if is_local(dest_channel) or dest == call.origin:
            return []
        agent = agent_from_channel(dest_channel)
        call.device_agent[dest] = agent
        return self._ringing(call, agent, _device_of(dest_channel), at)

    def _on_dial_end(self, ev: Event) -> list[DomainEvent]:
        dest = ev.get("DestUniqueid", "")
        call = self._calls.get(ev.get("DestLinkedid", "")) or self._call_of(ev)
        if call is None:
            return []
        status = ev.get("DialStatus", "")
        at = event_time(ev)
        if "Channel" not in ev and dest == call.origin:
            call.dial_status = status
            return self._origin_answered(call, at) if status == "ANSWER" else []
        if dest == call.customer_channel:
            call.dial_status = status
            return self._customer_answered(call, at) if status == "ANSWER" else []
        agent = call.device_agent.get(dest)
        if agent is None or is_local(ev.get("DestChannel", "")):
            return []
        if status == "ANSWER":
            return self._agent_answered(call, agent, _device_of(ev.get("DestChannel", "")), at)
        return self._ring_stopped(call, agent, at)

    def _ringing(self, call: _Call, agent: str, interface: str, at: float) -> list[DomainEvent]:
        answered_by_this_agent = agent == call.record.agent and call.record.answered_at is not None
        if not agent or agent in call.ringing or answered_by_this_agent:
            return []
        call.ringing[agent] = interface
        if agent not in call.record.agents_rung:
            call.record.agents_rung.append(agent)
        return [AgentRinging(call=call.record.snapshot(), agent=agent, interface=interface, at=at)]

    def _ring_stopped(self, call: _Call, agent: str, at: float) -> list[DomainEvent]:
        if call.ringing.pop(agent, None) is None:
            return []
        return [AgentRingStopped(call=call.record.snapshot(), agent=agent, at=at)]

    def _agent_answered(
        self, call: _Call, agent: str, interface: str, at: float
    ) -> list[DomainEvent]:
        record = call.record
        call.ringing.pop(agent, None)
        if record.agent == agent and (
            record.answered_at is not None or record.direction is Direction.OUTBOUND
        ):
            return []
        if record.agent is not None and record.agent != agent:
            record.transferred_to = agent
        else:
            record.agent = agent
            record.agent_interface = interface or record.agent_interface
        if record.answered_at is None:
            record.answered_at = at
        out: list[DomainEvent] = [CallAnswered(call=record.snapshot(), agent=agent, at=at)]
        for other in list(call.ringing):
            out += self._ring_stopped(call, other, at)
        return out

    def _origin_answered(self, call: _Call, at: float) -> list[DomainEvent]:
        """The originated first channel went up: the customer answered, if they are the origin."""
        if call.origin_up_at is None:
            call.origin_up_at = at
        if not call.direction_known or not call.customer_is_origin:
            return []
        return self._customer_answered(call, call.origin_up_at)

    def _customer_answered(self, call: _Call, at: float) -> list[DomainEvent]:
        """The customer picked up an outbound call."""
        record = call.record
        if record.direction is not Direction.OUTBOUND or record.answered_at is not None:
            return []
        record.answered_at = at
        agent = None if call.customer_is_origin else record.agent
        return [CallAnswered(call=record.snapshot(), agent=agent, at=at)]

    def _on_originate_response(self, ev: Event) -> list[DomainEvent]:
        call = self._calls.get(ev.get("Uniqueid", ""))
        if call is None:
            return []
        call.record.originate_action_id = ev.get("ActionID") or None
        call.originate_reason = ev.get("Reason")
        out: list[DomainEvent] = []
        if not call.direction_known:
            # Real Asterisk may send this before the first Newexten of the channel: its
            # Context is where the answered channel goes, which tells the direction as well.
            context = ev.get("Context", "")
            if context in self.policy.inbound_contexts:
                call.record.callee = _known(ev.get("Exten"))
                out += self._decide(call, Direction.INBOUND, event_time(ev))
            elif context in self.policy.agent_contexts:  # an agent's phone rung first
                out += self._decide(call, Direction.OUTBOUND, event_time(ev), False)
            else:
                out += self._decide(call, Direction.OUTBOUND, event_time(ev))
        if ev.get("Reason") == "4":
            out += self._origin_answered(call, event_time(ev))
        return out

    # ----------------------------------------------------------------- transfers

    def _on_blind_transfer(self, ev: Event) -> list[DomainEvent]:
        if ev.get("Result") != "Success":
            return []
        call = self._calls.get(
            self._channel_call.get(ev.get("TransfererUniqueid", ""), "")
            or ev.get("TransfererLinkedid", "")
            or ev.get("TransfereeLinkedid", "")
        )
        if call is None:
            return []
        target = ev.get("Extension", "")
        call.record.transferred_to = target or call.record.transferred_to
        transferer = ev.get("TransfererChannel", "")
        from_agent = (
            agent_from_channel(transferer)
            if transferer and not is_local(transferer)
            else call.record.agent
        )
        return [
            CallTransferred(
                call=call.record.snapshot(),
                from_agent=from_agent,
                to=target,
                kind="blind",
                at=event_time(ev),
            )
        ]

    def _on_attended_transfer(self, ev: Event) -> list[DomainEvent]:
        """An attended transfer joins the consultation call into the customer's call."""
        if ev.get("Result") != "Success":
            return []
        main_id = ev.get("OrigTransfererLinkedid", "")
        consult_id = ev.get("SecondTransfererLinkedid", "")
        main, consult = self._calls.get(main_id), self._calls.get(consult_id)
        if main is None:
            return []
        target = consult.record.callee if consult is not None else None
        target = target or _known(ev.get("SecondTransfererConnectedLineNum")) or ""
        if consult is not None and consult_id != main_id:
            self._merge(into=main, linkedid=consult_id)
        main.record.transferred_to = target or main.record.transferred_to
        transferer = ev.get("OrigTransfererChannel", "")
        from_agent = (
            agent_from_channel(transferer)
            if transferer and not is_local(transferer)
            else main.record.agent
        )
        return [
            CallTransferred(
                call=main.record.snapshot(),
                from_agent=from_agent,
                to=target,
                kind="attended",
                at=event_time(ev),
            )
        ]

    def _merge(self, into: _Call, linkedid: str) -> None:
        """Fold a call into another: its live channels now keep the other call alive."""
        merged = self._calls.pop(linkedid)
        for uniqueid in merged.live:
            self._channel_call[uniqueid] = into.record.linkedid
            into.live.add(uniqueid)
        self._remember_ended(linkedid)

    # ----------------------------------------------------------------- helpers

    def _call_of(self, ev: Event) -> _Call | None:
        linkedid = self._channel_call.get(ev.get("Uniqueid", ""))
        if linkedid is None:
            return None
        call = self._calls[linkedid]
        rx = ev.get("_rx")
        if rx:
            call.last_rx = max(call.last_rx, float(rx))
        return call

    def _disposition(self, call: _Call) -> Disposition:
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


def _device_of(channel: str) -> str:
    """``PJSIP/1001-0000004b`` -> ``PJSIP/1001``: the device a channel was placed on."""
    return _CHANNEL_SUFFIX.sub("", channel)


def _outgoing_line(channel: Event) -> bool:
    """A channel Asterisk placed (an Originate's) that runs no dialplan yet: no application, or
    Asterisk's ``AppDial`` of an outgoing line, and not in state Ring, which is an incoming
    line's before its dialplan starts. Its Context is only its endpoint's, which may be the one
    customers call in on (``telephony/traces/*/d_outbound_*``), so it says nothing of the
    direction."""
    return channel.get("ChannelState") != STATE_RING and channel.get("Application", "") in (
        OUTGOING_APPS
    )


def _hms_seconds(duration: str) -> float:
    """CoreShowChannel's ``Duration`` (``HH:MM:SS``) in seconds; 0 when unreadable."""
    try:
        hours, minutes, seconds = (int(part) for part in duration.split(":"))
    except ValueError:
        return 0.0
    return float(hours * 3600 + minutes * 60 + seconds)
