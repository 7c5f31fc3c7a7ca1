"""Recorded AMI traces (``telephony/traces/{sip,local}/NAME.ami``): loading and renumbering.

An ``.ami`` file holds the exact bytes Asterisk sent on one AMI connection, banner first. It is
read with the same :class:`~telephony.ami_codec.AmiFramer` as a live socket, so a trace exercises
the real framing code. Each event gets a replay time from its ``Timestamp`` header
(``timestampevents=yes``); an event without one (``FullyBooted``) takes the previous event's time.

:func:`renumber` makes one trace usable many times in one run (the simulator, the demo, the
benchmarks): it gives the calls fresh Uniqueid/Linkedid values in Asterisk's own ``DIGITS.DIGITS``
form and moves the timestamps to the present.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from telephony.ami_codec import BANNER_PREFIX, AmiFramer, parse_frame

# Events that belong to the recording client's own AMI session, not to the calls: replaying them
# to another client would tell it lies about its own connection.
RECORDED_TRACES = Path(__file__).resolve().parent / "traces"
"""The real Asterisk 22.10.1 traces shipped with the package (see its README.md)."""

SESSION_EVENTS = frozenset({"FullyBooted", "SuccessfulAuth", "Shutdown"})

ID_VALUE = re.compile(r"^\d{9,11}\.\d+$")
_EMBEDDED_ID = re.compile(r"(?<![\d.])\d{9,11}\.\d+(?!\d)")
_ID_KEY_SUFFIXES = ("uniqueid", "linkedid")
_OFFSET_STEP = 100_000


@dataclass(frozen=True)
class Trace:
    """A loaded trace. ``events`` are plain event dicts (what the call tracker eats);
    ``times[i]`` is the replay time (epoch seconds) of ``events[i]``."""

    name: str
    banner: str | None
    frames: tuple[dict[str, str], ...]
    events: tuple[dict[str, str], ...]
    times: tuple[float, ...]

    @property
    def duration(self) -> float:
        """Seconds from the first to the last event."""
        return self.times[-1] - self.times[0] if self.times else 0.0

    @property
    def call_events(self) -> list[dict[str, str]]:
        """The events worth replaying to another client (no :data:`SESSION_EVENTS`)."""
        return without_session_events(self.events)


def without_session_events(events: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    return [dict(e) for e in events if e.get("Event") not in SESSION_EVENTS]


def read_frames(path: str | Path) -> tuple[str | None, list[dict[str, str]]]:
    """The banner and every frame (responses and events) of an ``.ami`` file, in wire order."""
    data = Path(path).read_bytes()
    framer = AmiFramer(expect_banner=data.startswith(BANNER_PREFIX), max_frame_bytes=len(data))
    frames = [dict(pairs) for pairs in map(parse_frame, framer.feed_raw(data)) if pairs]
    return framer.banner, frames


def replay_times(events: Sequence[Mapping[str, str]]) -> list[float]:
    """Each event's ``Timestamp``, or the previous event's when it has none (the first events
    take the first Timestamp of the list; 0.0 when no event has one)."""
    first = next((float(e["Timestamp"]) for e in events if "Timestamp" in e), 0.0)
    times, current = [], first
    for event in events:
        if "Timestamp" in event:
            current = float(event["Timestamp"])
        times.append(current)
    return times


def load_trace(path: str | Path) -> Trace:
    """Load an ``.ami`` file; ``events`` keeps only ``Event`` frames (not the recorder's
    own responses)."""
    banner, frames = read_frames(path)
    events = tuple(f for f in frames if "Event" in f)
    return Trace(
        name=Path(path).stem,
        banner=banner,
        frames=tuple(frames),
        events=events,
        times=tuple(replay_times(events)),
    )


def _is_id_key(key: str) -> bool:
    return key.lower().endswith(_ID_KEY_SUFFIXES)


def _collect_ids(events: Sequence[Mapping[str, str]]) -> set[str]:
    return {
        value
        for event in events
        for key, value in event.items()
        if _is_id_key(key) and ID_VALUE.match(value)
    }


def _shifted_id(old: str, offset: int) -> str:
    seconds, counter = old.split(".")
    return f"{seconds}.{int(counter) + offset * _OFFSET_STEP}"


def _rewrite(headers: dict[str, str], id_map: Mapping[str, str], shift: float) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in headers.items():
        if key == "Timestamp":
            out[key] = f"{float(value) + shift:.6f}" if shift else value
        elif _is_id_key(key) and value in id_map:
            out[key] = id_map[value]
        else:
            out[key] = _EMBEDDED_ID.sub(lambda m: id_map.get(m.group(), m.group()), value)
    return out


def renumber(
    events: Sequence[Mapping[str, str]],
    offset: int,
    *,
    start_at: float | None = None,
    fixed_ids: Mapping[str, str] | None = None,
) -> list[dict[str, str]]:
    """A copy of ``events`` whose calls do not collide with other replays of the same trace.

    Every Uniqueid/Linkedid-like header (``Uniqueid``, ``DestLinkedid``, ``LocalOneUniqueid``,
    ``UniqueID``, ``LinkedID``...) holding an Asterisk id ``1795346712.954`` gets
    ``offset * 100000`` added to its counter (``1795346712.100954`` for offset 1); the same id
    inside other values (the recording file name ``/var/spool/.../1795346712.954.wav``) follows,
    so each replay also records to its own file. BridgeUniqueid values are UUIDs and stay;
    ``Timestamp``, ``SentNTP`` and the like are not ids. ``fixed_ids`` forces chosen
    replacements (the simulator maps an originated channel to the Originate's ``ChannelId``).

    With ``start_at``, every ``Timestamp`` moves so that the first event's replay time is
    ``start_at``.
    """
    id_map = {old: _shifted_id(old, offset) for old in _collect_ids(events)}
    id_map.update(fixed_ids or {})
    times = replay_times(events)
    shift = (start_at - times[0]) if (start_at is not None and events) else 0.0
    return [_rewrite(event, id_map, shift) for event in events]
