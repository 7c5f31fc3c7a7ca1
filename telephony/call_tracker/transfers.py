"""The rules for transfers: a blind transfer names its target; an attended transfer joins the
consultation call into the customer's call, whose record then goes on."""

from __future__ import annotations

from telephony.call_events import CallTransferred, DomainEvent
from telephony.call_tracker.lifecycle import CallSteps
from telephony.call_tracker.names import agent_from_channel, is_local, known
from telephony.call_tracker.state import CallState, Event, event_time


class TransferRules(CallSteps):
    """BlindTransfer and AttendedTransfer."""

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
        target = target or known(ev.get("SecondTransfererConnectedLineNum")) or ""
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

    def _merge(self, into: CallState, linkedid: str) -> None:
        """Fold a call into another: its live channels now keep the other call alive."""
        merged = self._calls.pop(linkedid)
        for uniqueid in merged.live:
            self._channel_call[uniqueid] = into.record.linkedid
            into.live.add(uniqueid)
        self._remember_ended(linkedid)
