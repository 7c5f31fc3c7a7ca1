"""The call tracker: AMI events in, calls and domain events out (see :mod:`.lifecycle`)."""

from telephony.call_tracker.lifecycle import (
    CallTracker,
    TrackerPolicy,
    agent_from_channel,
    agent_from_interface,
    is_local,
    number_from_dial_string,
)

__all__ = [
    "CallTracker",
    "TrackerPolicy",
    "agent_from_channel",
    "agent_from_interface",
    "is_local",
    "number_from_dial_string",
]
