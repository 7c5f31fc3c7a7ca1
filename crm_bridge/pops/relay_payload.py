"""The payloads the pop relay sends through PostgreSQL's NOTIFY (see :mod:`crm_bridge.pops.relay`):
an event with its origin and arrival time, or one part of an instance's list of live calls, as
JSON of at most :data:`MAX_PAYLOAD_BYTES` bytes. Pure: no connection, no psycopg.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import TypeAdapter, ValidationError

from telephony.call_events import (
    AgentRinging,
    AgentRingStopped,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallTransferred,
    DomainEvent,
    RecordingStarted,
)

FORMAT = 1
"""The payload's format version; a payload of another version is refused."""


MAX_PAYLOAD_BYTES = 7999
"""PostgreSQL refuses a NOTIFY payload of 8000 bytes or more (in its default build)."""


AGENTS_RUNG_KEPT = 32
"""How many of the agents a call rang an over-long payload keeps (the last ones)."""


LIVE_PART_BYTES = 7000
"""Linkedids per part of that list, in encoded bytes (the rest of the payload fits beside)."""


_EVENT_TYPES: dict[str, type[Any]] = {
    cls.__name__: cls
    for cls in (
        CallOffered,
        AgentRinging,
        AgentRingStopped,
        CallAnswered,
        CallTransferred,
        RecordingStarted,
        CallEnded,
    )
}


_ADAPTERS = {name: TypeAdapter(cls) for name, cls in _EVENT_TYPES.items()}


class PayloadTooLong(ValueError):
    """The event does not fit in one NOTIFY payload, even with its agents cut."""


@dataclass(frozen=True, slots=True)
class Relayed:
    """A decoded payload."""

    origin: str
    event: DomainEvent
    received_at: float | None
    """Wall-clock (``time.time()``) arrival of the AMI event's bytes at the origin, if known."""


@dataclass(frozen=True, slots=True)
class LiveCalls:
    """One part of the list of the calls an instance has in flight (see the module docstring)."""

    origin: str
    seq: int
    part: int
    parts: int
    linkedids: frozenset[str]


def encode(event: DomainEvent, origin: str, received_at: float | None) -> str:
    """The NOTIFY payload of ``event``; ``received_at`` is wall-clock. Raises
    :class:`PayloadTooLong` for an event that cannot be made to fit."""
    payload = _dumps(event, origin, received_at)
    if len(payload.encode()) <= MAX_PAYLOAD_BYTES:
        return payload
    call = replace(event.call, agents_rung=event.call.agents_rung[-AGENTS_RUNG_KEPT:])
    payload = _dumps(replace(event, call=call), origin, received_at)
    size = len(payload.encode())
    if size > MAX_PAYLOAD_BYTES:
        raise PayloadTooLong(f"{type(event).__name__} of call {event.call.linkedid}: {size} bytes")
    return payload


def _dumps(event: DomainEvent, origin: str, received_at: float | None) -> str:
    name = type(event).__name__
    fields = _ADAPTERS[name].dump_python(event, mode="json", exclude_defaults=True)
    return _json({"v": FORMAT, "o": origin, "rx": received_at, "t": name, "e": fields})


def encode_live(origin: str, seq: int, linkedids: Iterable[str]) -> list[str]:
    """The payloads of list number ``seq`` of an instance's calls in flight: one per
    :data:`LIVE_PART_BYTES` of linkedids (always at least one, so an empty list is heard)."""
    parts: list[list[str]] = [[]]
    size = 0
    for linkedid in sorted(linkedids):
        cost = len(json.dumps(linkedid, ensure_ascii=False).encode()) + 1
        if cost > LIVE_PART_BYTES:
            continue  # no event of such a call fitted a payload either
        if size + cost > LIVE_PART_BYTES:
            parts.append([])
            size = 0
        parts[-1].append(linkedid)
        size += cost
    return [
        _json({"v": FORMAT, "o": origin, "seq": seq, "part": i, "parts": len(parts), "live": ids})
        for i, ids in enumerate(parts)
    ]


def _json(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":"))


def decode(payload: str) -> Relayed | LiveCalls:
    """What a payload carries; ``ValueError`` for anything that is not a payload of ours."""
    try:
        message = json.loads(payload)
        if not isinstance(message, dict) or message.get("v") != FORMAT:
            raise ValueError("not a pop relay payload of this version")
        origin = message["o"]
        if not isinstance(origin, str):
            raise TypeError("origin")
        if "live" in message:
            return _live_calls(origin, message)
        rx, adapter = message["rx"], _ADAPTERS[message["t"]]
        event = adapter.validate_python(message["e"])
    except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
        raise ValueError(f"malformed pop relay payload: {type(exc).__name__}") from None
    if not (rx is None or type(rx) in (int, float)):
        raise ValueError("malformed pop relay payload: time")
    return Relayed(origin, event, None if rx is None else float(rx))


def _live_calls(origin: str, message: dict[str, Any]) -> LiveCalls:
    seq, part, parts, ids = message["seq"], message["part"], message["parts"], message["live"]
    numbers_fit = all(type(n) is int for n in (seq, part, parts)) and 0 <= part < parts
    if not numbers_fit or not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise TypeError("live calls")
    return LiveCalls(origin, seq, part, parts, frozenset(ids))


def wall_of(monotonic: float | None) -> float | None:
    """A ``time.monotonic()`` of this process as wall-clock time."""
    return None if monotonic is None else time.time() - (time.monotonic() - monotonic)


@dataclass
class LiveParts:
    """The parts heard so far of one list of an instance's calls in flight."""

    seq: int
    parts_heard: set[int] = field(default_factory=set)
    linkedids: set[str] = field(default_factory=set)
