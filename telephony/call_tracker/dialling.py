"""The rules for what ``Dial`` and ``Originate`` show: an Originate dialling its first channel
(the customer, or an agent's phone for a click-to-call), an agent's phone dialling the
customer, a phone rung directly, each dial's end, and the ``OriginateResponse``.

On a SIP trunk, busy and congestion both give ``OriginateResponse`` Reason 0: the outcome
comes from ``DialEnd``'s ``DialStatus`` first, the customer channel's hangup ``Cause`` next,
and the originate Reason last (see ``CallSteps._disposition``)."""

from __future__ import annotations

from telephony.call_events import Direction, DomainEvent
from telephony.call_tracker.lifecycle import CallSteps
from telephony.call_tracker.names import (
    agent_from_channel,
    device_of,
    is_local,
    known,
    number_from_dial_string,
)
from telephony.call_tracker.state import Event, event_time


class DialRules(CallSteps):
    """DialBegin, DialEnd and OriginateResponse."""

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
        return self._ringing(call, agent, device_of(dest_channel), at)

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
            return self._agent_answered(call, agent, device_of(ev.get("DestChannel", "")), at)
        return self._ring_stopped(call, agent, at)

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
                call.record.callee = known(ev.get("Exten"))
                out += self._decide(call, Direction.INBOUND, event_time(ev))
            elif context in self.policy.agent_contexts:  # an agent's phone rung first
                out += self._decide(call, Direction.OUTBOUND, event_time(ev), False)
            else:
                out += self._decide(call, Direction.OUTBOUND, event_time(ev))
        if ev.get("Reason") == "4":
            out += self._origin_answered(call, event_time(ev))
        return out
