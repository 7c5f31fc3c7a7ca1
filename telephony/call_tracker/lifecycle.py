"""The steps every call goes through, each announcing its domain event: begun, offered (its
direction decided), an agent rung or no longer rung, answered, recording started, ended.

The rule modules read AMI events and call these steps; a step checks that it has not
happened yet, so a call announces each of them once however many events show it.
"""

from __future__ import annotations

from telephony.call_events import (
    AgentRinging,
    AgentRingStopped,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallRecord,
    Direction,
    DomainEvent,
    EndReason,
    RecordingStarted,
)
from telephony.call_tracker.names import agent_from_channel, device_of, is_local, known
from telephony.call_tracker.state import STATE_RING, CallBook, CallState, Event


class CallSteps(CallBook):
    """The steps of a call on top of the tracker's state; see the module docstring."""

    def _begin_call(self, ev: Event, at: float) -> list[DomainEvent]:
        uniqueid, linkedid = ev["Uniqueid"], ev["Linkedid"]
        record = CallRecord(linkedid=linkedid, server=self.server, offered_at=at)
        call = CallState(
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
            exten = known(ev.get("Exten"))
            if exten and exten != "s":
                record.callee = exten
            return self._decide(call, Direction.INBOUND, at)
        return []

    def _take_caller_id(self, call: CallState, ev: Event) -> None:
        record = call.record
        if ev.get("Uniqueid") != call.origin or not call.customer_is_origin:
            return
        if record.caller is None:
            record.caller = known(ev.get("CallerIDNum"))
        if record.caller_name is None:
            record.caller_name = known(ev.get("CallerIDName"))

    def _decide(
        self, call: CallState, direction: Direction, at: float, customer_is_origin: bool = True
    ) -> list[DomainEvent]:
        """Fix the call's direction once and announce it."""
        if call.direction_known:
            return []
        call.direction_known = True
        call.record.direction = direction
        call.customer_is_origin = customer_is_origin
        if not customer_is_origin and call.origin_channel:
            call.record.agent = agent_from_channel(call.origin_channel)
            call.record.agent_interface = device_of(call.origin_channel)
            call.record.caller = call.record.agent
        out: list[DomainEvent] = [
            CallOffered(call=call.record.snapshot(), at=call.record.offered_at or at)
        ]
        if customer_is_origin and call.record.callee is None:
            call.record.callee = call.origin_dialled
        if customer_is_origin and call.origin_up_at is not None:
            out += self._customer_answered(call, call.origin_up_at)
        return out

    def _ringing(self, call: CallState, agent: str, interface: str, at: float) -> list[DomainEvent]:
        answered_by_this_agent = agent == call.record.agent and call.record.answered_at is not None
        if not agent or agent in call.ringing or answered_by_this_agent:
            return []
        call.ringing[agent] = interface
        if agent not in call.record.agents_rung:
            call.record.agents_rung.append(agent)
        return [AgentRinging(call=call.record.snapshot(), agent=agent, interface=interface, at=at)]

    def _ring_stopped(self, call: CallState, agent: str, at: float) -> list[DomainEvent]:
        if call.ringing.pop(agent, None) is None:
            return []
        return [AgentRingStopped(call=call.record.snapshot(), agent=agent, at=at)]

    def _agent_answered(
        self, call: CallState, agent: str, interface: str, at: float
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

    def _origin_answered(self, call: CallState, at: float) -> list[DomainEvent]:
        """The originated first channel went up: the customer answered, if they are the origin."""
        if call.origin_up_at is None:
            call.origin_up_at = at
        if not call.direction_known or not call.customer_is_origin:
            return []
        return self._customer_answered(call, call.origin_up_at)

    def _customer_answered(self, call: CallState, at: float) -> list[DomainEvent]:
        """The customer picked up an outbound call."""
        record = call.record
        if record.direction is not Direction.OUTBOUND or record.answered_at is not None:
            return []
        record.answered_at = at
        agent = None if call.customer_is_origin else record.agent
        return [CallAnswered(call=record.snapshot(), agent=agent, at=at)]

    def _recording(self, call: CallState, path: str, at: float) -> list[DomainEvent]:
        if call.record.recording_path is not None:
            return []
        call.record.recording_path = path
        return [RecordingStarted(call=call.record.snapshot(), path=path, at=at)]

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
