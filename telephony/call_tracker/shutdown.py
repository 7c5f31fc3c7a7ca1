"""The rules for Asterisk shutting down or restarting while calls are up.

Asterisk first asks each channel to hang up (``SoftHangupRequest`` with cause 4), then sends
``Shutdown`` and closes the session, so the hangups may never reach us. A call marked here
ends as ``pbx_restart`` (at the time Asterisk began cutting it) by its hangup, or by the
resync after the reconnect (see :mod:`telephony.call_tracker.resync`)."""

from __future__ import annotations

from telephony.call_events import DomainEvent
from telephony.call_tracker.lifecycle import CallSteps
from telephony.call_tracker.state import SOFTHANGUP_SHUTDOWN, Event, event_time


class ShutdownRules(CallSteps):
    """SoftHangupRequest and Shutdown."""

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
