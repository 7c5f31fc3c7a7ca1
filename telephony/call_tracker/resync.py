"""The resync after a (re)connect: the calls that ended while we were away are closed, and the
calls that began meanwhile are adopted and rebuilt from a ``CoreShowChannels`` snapshot."""

from __future__ import annotations

from collections.abc import Iterable

from telephony.call_events import Direction, DomainEvent, EndReason
from telephony.call_tracker.lifecycle import CallSteps
from telephony.call_tracker.names import (
    agent_from_channel,
    device_of,
    is_local,
    is_routing_channel,
    known,
)
from telephony.call_tracker.state import OUTGOING_APPS, STATE_RING, STATE_UP, CallState, Event


class ResyncRules(CallSteps):
    """:meth:`resync`, and how a call first seen in a snapshot is taken over."""

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
        snapshot = {
            ch["Uniqueid"]: ch
            for ch in channels
            if ch.get("Uniqueid") and not is_routing_channel(ch.get("Channel", ""))
        }  # the routing's Local channels (no calls) live a few ms: manager.conf drops their events
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
            call.record.callee = known(ch.get("Exten")) or call.record.callee
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

    def _rebuild(self, call: CallState, channels: list[Event], at: float) -> list[DomainEvent]:
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
                number = known(origin.get("ConnectedLineNum")) or known(ch.get("CallerIDNum"))
                call.record.callee = call.record.callee or number
                out += self._customer_answered(call, since) if up else []
                continue
            agent = agent_from_channel(channel)
            call.device_agent[ch["Uniqueid"]] = agent
            out += self._ringing(call, agent, device_of(channel), since)
            out += self._agent_answered(call, agent, device_of(channel), since) if up else []
        return out


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
