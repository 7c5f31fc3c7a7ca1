"""The rules for the events every call's channels give: created, dialplan run (which tells
an originated call's direction), state and caller id changed, a recording or campaign
variable set, the CDR, and hung up (the call ends with its last channel)."""

from __future__ import annotations

from telephony.call_events import Direction, DomainEvent, EndReason
from telephony.call_tracker.lifecycle import CallSteps
from telephony.call_tracker.names import known
from telephony.call_tracker.state import (
    CALL_VARIABLES,
    CAMPAIGN_VARIABLES,
    RECORDING_VARIABLES,
    ROUTE_VARIABLE,
    STATE_UP,
    SURVEY_BEGUN_VARIABLE,
    SURVEY_SCORES,
    SURVEY_VARIABLE,
    CallState,
    Event,
    event_time,
)


class ChannelRules(CallSteps):
    """Newchannel, Newexten, Newstate, NewCallerid, VarSet, Cdr and Hangup."""

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

    def _on_newexten(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is None or call.direction_known or ev["Uniqueid"] != call.origin:
            return []
        if ev.get("Application", "").startswith("AppDial"):
            return []  # the "(Outgoing Line)" placeholder of a channel being dialled, not dialplan
        context = ev.get("Context", "")
        at = event_time(ev)
        if context in self.policy.inbound_contexts:
            call.record.callee = known(ev.get("Extension") or ev.get("Exten"))
            return self._decide(call, Direction.INBOUND, at)
        if context in self.policy.agent_contexts:
            return self._decide(call, Direction.OUTBOUND, at, customer_is_origin=False)
        return self._decide(call, Direction.OUTBOUND, at)

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

    def _on_varset(self, ev: Event) -> list[DomainEvent]:
        variable = ev.get("Variable", "")
        if variable not in RECORDING_VARIABLES | CAMPAIGN_VARIABLES | CALL_VARIABLES:
            return []
        call = self._call_of(ev)
        value = ev.get("Value", "")
        if call is None or not value:
            return []
        if variable == SURVEY_VARIABLE:
            self._take_survey(call, ev["Uniqueid"], value)
            return []
        if variable == SURVEY_BEGUN_VARIABLE:
            self._survey_begun(call, ev["Uniqueid"], event_time(ev))
            return []
        if variable == ROUTE_VARIABLE:
            call.record.route = value
            return []
        if variable in CAMPAIGN_VARIABLES:
            call.record.campaign = value
            return []
        return self._recording(call, value, event_time(ev))

    def _take_survey(self, call: CallState, uniqueid: str, value: str) -> None:
        """Keep a survey score set on the customer's own channel; one set on any other
        channel of the call (an agent's, a Local half) or outside 1-5 is ignored."""
        if call.customer_is_origin and uniqueid == call.origin and value in SURVEY_SCORES:
            call.record.survey_score = int(value)

    def _survey_begun(self, call: CallState, uniqueid: str, at: float) -> None:
        """The customer's channel began the survey: the agent was gone, the talk is over (the
        survey's seconds are no handle time)."""
        record = call.record
        if call.customer_is_origin and uniqueid == call.origin and record.answered_at is not None:
            record.talk_ended_at = record.talk_ended_at or at

    def _on_cdr(self, ev: Event) -> list[DomainEvent]:
        call = self._calls.get(ev.get("LinkedID") or ev.get("Linkedid") or "")
        if call is None:
            return []
        if ev.get("Campaign"):
            call.record.campaign = call.record.campaign or ev["Campaign"]
        if ev.get("Recording"):
            return self._recording(call, ev["Recording"], event_time(ev))
        return []

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

    def _is_customer_leg(self, call: CallState, uniqueid: str, channel: str) -> bool:
        """The customer's channel, or the ``;2`` half of a Local channel that stands for it."""
        if not call.customer_is_origin:
            return uniqueid == call.customer_channel
        if uniqueid == call.origin:
            return True
        origin = call.origin_channel
        return origin.endswith(";1") and channel == origin[:-1] + "2"

    @staticmethod
    def _take_cause(call: CallState, ev: Event) -> None:
        """Keep the most telling hangup cause of the customer's leg (0 says nothing)."""
        cause = ev.get("Cause", "")
        if not cause.isdigit() or (call.customer_cause and int(cause) == 0):
            return
        call.customer_cause = int(cause)
        call.record.hangup_cause = call.customer_cause
        call.record.hangup_cause_text = ev.get("Cause-txt") or None
