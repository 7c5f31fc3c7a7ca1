"""Which channel of a call carries which side's voice, from the AMI channel events.

The domain events name calls and agents, not channels; a spy needs the channel. This index
keeps, per server, every live channel (name, Linkedid, dialplan context it began in) from
``Newchannel``/``Hangup`` and from each resync snapshot, and answers "the customer's channel
and the agent's channel of call X".

The rule (the dialplans of ``dialplans/``): the call's first channel (its Uniqueid is the
Linkedid) is the customer's, unless it began in an agent-phone context (an agent dialling
out). The other side is a non-Local channel of the same call: the answering agent's phone
(``PJSIP/1001-…``) when the agent is known, else the one other non-Local channel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from telephony.call_tracker import agent_from_channel, is_local

SPY_ID_PREFIX = "cblive-"
"""The ChannelId (Uniqueid, hence Linkedid) of every spy channel the bridge originates."""
CHANNEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9/_.@:+-]{0,127}$")
"""What a channel name handed to ChanSpy may look like (no ``,`` ``|`` ``$`` or spaces)."""


def is_spy_event(event: Mapping[str, str]) -> bool:
    """An event (or snapshot) of a channel the bridge placed to listen in."""
    return event.get("Linkedid", "").startswith(SPY_ID_PREFIX) or event.get(
        "Uniqueid", ""
    ).startswith(SPY_ID_PREFIX)


@dataclass(frozen=True)
class Channel:
    uniqueid: str
    name: str
    linkedid: str
    context: str
    up: bool


@dataclass(frozen=True)
class Sides:
    customer: str | None
    agent: str | None

    def items(self) -> list[tuple[str, str]]:
        return [(side, name) for side, name in (("customer", self.customer),
                                                ("agent", self.agent)) if name]  # fmt: skip


class ChannelIndex:
    """Live channels of one server."""

    def __init__(self, agent_contexts: Iterable[str]) -> None:
        self._agent_contexts = frozenset(agent_contexts)
        self._channels: dict[str, Channel] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def feed(self, event: Mapping[str, str]) -> None:
        kind = event.get("Event")
        if kind == "Newchannel":
            self._add(event)
        elif kind == "Newstate" and event.get("Uniqueid", "") in self._channels:
            channel = self._channels[event["Uniqueid"]]
            self._channels[channel.uniqueid] = replace(channel, up=_is_up(event))
        elif kind == "Hangup":
            self._channels.pop(event.get("Uniqueid", ""), None)

    def replace(self, snapshot: Iterable[Mapping[str, str]]) -> None:
        """A resync: the snapshot is now the whole truth."""
        self._channels.clear()
        for channel in snapshot:
            self._add(channel)

    def alive(self, name: str) -> bool:
        return any(channel.name == name for channel in self._channels.values())

    def linkedids(self) -> set[str]:
        return {channel.linkedid for channel in self._channels.values()}

    def talking(self) -> set[str]:
        """Calls with two channels up (after a resync: the calls to listen to again)."""
        ups: dict[str, int] = {}
        for channel in self._channels.values():
            if channel.up and not is_local(channel.name):
                ups[channel.linkedid] = ups.get(channel.linkedid, 0) + 1
        return {linkedid for linkedid, count in ups.items() if count >= 2}

    def legs(self, linkedid: str) -> list[str]:
        """The names of the call's channels that are up and no Local half, oldest first."""
        return [c.name for c in self._channels.values() if c.linkedid == linkedid and c.up
                and not is_local(c.name) and CHANNEL_NAME.match(c.name)]  # fmt: skip

    def sides(self, linkedid: str, agent: str | None) -> Sides:
        legs = [c for c in self._channels.values() if c.linkedid == linkedid and c.up
                and not is_local(c.name) and CHANNEL_NAME.match(c.name)]  # fmt: skip
        origin = next((c for c in legs if c.uniqueid == linkedid), None)
        others = [c for c in legs if c is not origin]
        if origin is not None and origin.context in self._agent_contexts:
            customer = others[0].name if len(others) == 1 else None
            return Sides(customer=customer, agent=origin.name)
        if agent is not None:
            mine = [c for c in others if agent_from_channel(c.name) == agent]
        else:
            mine = others if len(others) == 1 else []
        return Sides(
            customer=origin.name if origin is not None else None,
            agent=mine[-1].name if mine else None,
        )

    def _add(self, event: Mapping[str, str]) -> None:
        uniqueid, name = event.get("Uniqueid", ""), event.get("Channel", "")
        if not uniqueid or not name or is_spy_event(event):
            return
        self._channels[uniqueid] = Channel(
            uniqueid,
            name,
            event.get("Linkedid", uniqueid),
            event.get("Context", ""),
            _is_up(event),
        )


def _is_up(event: Mapping[str, str]) -> bool:
    return event.get("ChannelState") == "6"
