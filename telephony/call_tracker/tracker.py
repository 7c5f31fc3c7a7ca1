"""The reducer: :class:`CallTracker`'s public API, and the one table that hands each AMI event
to the rule that reads it.

The rules live in the modules beside this one, each a set of methods on the tracker's state
(:mod:`~telephony.call_tracker.channels`, :mod:`~telephony.call_tracker.inbound`,
:mod:`~telephony.call_tracker.dialling`, :mod:`~telephony.call_tracker.transfers`,
:mod:`~telephony.call_tracker.shutdown`, :mod:`~telephony.call_tracker.resync`). The table
holds bound methods built once, so an event costs one dictionary lookup and one call.
"""

from __future__ import annotations

from collections.abc import Iterable

from telephony.ami_codec import EventSieve
from telephony.call_events import CallRecord, DomainEvent
from telephony.call_tracker.channels import ChannelRules
from telephony.call_tracker.dialling import DialRules
from telephony.call_tracker.inbound import QueueRules
from telephony.call_tracker.resync import ResyncRules
from telephony.call_tracker.shutdown import ShutdownRules
from telephony.call_tracker.state import (
    CALL_VARIABLES,
    CAMPAIGN_VARIABLES,
    RECORDING_VARIABLES,
    Event,
    TrackerPolicy,
)
from telephony.call_tracker.transfers import TransferRules


class CallTracker(ChannelRules, QueueRules, DialRules, TransferRules, ShutdownRules, ResyncRules):
    """Turns one AMI server's event stream into calls (see :mod:`telephony.call_tracker`):
    :meth:`feed` each event, :meth:`resync` with each snapshot taken after a (re)connect."""

    def __init__(self, server: str = "default", policy: TrackerPolicy | None = None) -> None:
        super().__init__(server, policy)
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

    @property
    def calls_in_flight(self) -> int:
        return len(self._calls)

    def active_calls(self) -> list[CallRecord]:
        return [c.record.snapshot() for c in self._calls.values()]

    def sieve(self) -> EventSieve:
        """What of an AMI stream this tracker reads: its events, and of VarSet the recording,
        campaign, route and survey variables; everything else can be dropped before it is
        parsed."""
        variables = RECORDING_VARIABLES | CAMPAIGN_VARIABLES | CALL_VARIABLES
        return EventSieve(self._handlers, variables)

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
