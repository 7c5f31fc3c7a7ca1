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

The package, from the bottom up (each module imports only those above it in this list):

* :mod:`~telephony.call_tracker.names`: reading channel names, dial strings and caller ids;
* :mod:`~telephony.call_tracker.state`: the per-call state, the policy and Asterisk's codes;
* :mod:`~telephony.call_tracker.lifecycle`: the steps of a call and the domain events they
  announce;
* the rules, one module per kind of AMI event, independent of each other:
  :mod:`~telephony.call_tracker.channels`, :mod:`~telephony.call_tracker.inbound` (queues),
  :mod:`~telephony.call_tracker.dialling` (Dial and Originate),
  :mod:`~telephony.call_tracker.transfers`, :mod:`~telephony.call_tracker.shutdown`,
  :mod:`~telephony.call_tracker.resync`;
* :mod:`~telephony.call_tracker.tracker`: :class:`CallTracker`, the dispatch of each event.
"""

from telephony.call_tracker.names import (
    agent_from_channel,
    agent_from_interface,
    is_local,
    number_from_dial_string,
)
from telephony.call_tracker.state import TrackerPolicy, event_time
from telephony.call_tracker.tracker import CallTracker

__all__ = [
    "CallTracker",
    "TrackerPolicy",
    "agent_from_channel",
    "agent_from_interface",
    "event_time",
    "is_local",
    "number_from_dial_string",
]
