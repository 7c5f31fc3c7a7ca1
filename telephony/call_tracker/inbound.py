"""The rules for a call waiting in a queue: the queue it joined, and each agent the queue
rings (``AgentCalled``), stops ringing (``AgentRingNoAnswer``) or connects (``AgentConnect``).

A queue rings a member through a Local pair; the member ``Interface`` names the agent, the
same agent a ``DialBegin`` of the phone names (see :mod:`telephony.call_tracker.dialling`),
so a ring is announced once per agent."""

from __future__ import annotations

from telephony.call_events import DomainEvent
from telephony.call_tracker.lifecycle import CallSteps
from telephony.call_tracker.names import agent_from_interface
from telephony.call_tracker.state import Event, event_time


class QueueRules(CallSteps):
    """QueueCallerJoin, AgentCalled, AgentRingNoAnswer and AgentConnect."""

    def _on_queue_join(self, ev: Event) -> list[DomainEvent]:
        call = self._call_of(ev)
        if call is not None:
            call.record.queue = ev.get("Queue") or call.record.queue
            self._take_caller_id(call, ev)
        return []

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
