"""The AMI path's throughput beside the cost of panoramisk's own parsing of the same bytes.

Replays the real 50-call trace (telephony/traces/sip/load_50_concurrent.ami) many times, each
replay renumbered so it makes 50 new calls, written back as wire bytes and cut into the 64 KiB
reads a session takes from its socket. On those bytes, in one run:

* ``path``: what a bridge session does with every read (``telephony/ami_connection/session.py``
  ``AmiSession._handle``): framing on bytes, the tracker's sieve, decoding and parsing the frames it
  keeps, and ``CallTracker.feed`` for every event delivered;
* ``panoramisk``: ``panoramisk.message.Message.from_line`` on every frame of the same bytes,
  which is what panoramisk does for every message before any application code runs;
* ``tracker``: ``CallTracker.feed`` alone on the events already parsed.

Events per second count every event of the trace, read or dropped by the sieve.

Usage: ``python bench/tracker.py [--repeat N] [--profile]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import time

from panoramisk.message import Message

from telephony.ami_codec import AmiFramer
from telephony.ami_connection.session import READ_SIZE, AmiSession
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, renumber

TRACE = RECORDED_TRACES / "sip" / "load_50_concurrent.ami"


def wire_bytes(events: list[dict[str, str]]) -> bytes:
    """Events written as Asterisk writes them: ``Key: Value`` lines, CR LF, a blank line."""
    return b"".join(
        "".join(f"{key}: {value}\r\n" for key, value in event.items()).encode() + b"\r\n"
        for event in events
    )


def replays(repeat: int) -> tuple[list[bytes], int]:
    """``repeat`` renumbered replays as socket reads, and how many events they hold."""
    framer = AmiFramer()
    events = framer.feed(TRACE.read_bytes())
    body = b"".join(wire_bytes(renumber(events, n)) for n in range(repeat))
    reads = [body[i : i + READ_SIZE] for i in range(0, len(body), READ_SIZE)]
    return reads, len(events) * repeat


class _Tracked:
    """The bridge's ``on_event``: the tracker's domain events, the calls that ended counted."""

    def __init__(self) -> None:
        self.tracker = CallTracker()
        self.events: list[dict[str, str]] = []
        self.ended = 0

    def __call__(self, event: dict[str, str]) -> None:
        self.events.append(event)
        for domain_event in self.tracker.feed(event):
            self.ended += isinstance(domain_event, CallEnded)


def bench_path(reads: list[bytes]) -> tuple[float, _Tracked]:
    """Seconds for a session to frame, sieve, parse and track every read."""
    tracked = _Tracked()
    session = AmiSession(None, None, tracked, tracked.tracker.sieve())  # type: ignore[arg-type]
    session.framer.feed_raw(b"Asterisk Call Manager/11.0.0\r\n")
    handle = session._handle
    started = time.perf_counter()
    for data in reads:
        handle(data, time.time())
    return time.perf_counter() - started, tracked


def bench_tracker_alone(events: list[dict[str, str]]) -> float:
    tracker = CallTracker()
    started = time.perf_counter()
    for event in events:
        tracker.feed(event)
    return time.perf_counter() - started


def bench_panoramisk(reads: list[bytes]) -> tuple[float, int]:
    text = b"".join(reads).decode("utf-8", "ignore")
    parsed = 0
    started = time.perf_counter()
    for frame in text.split("\r\n\r\n"):
        if Message.from_line(frame.strip()) is not None:
            parsed += 1
    return time.perf_counter() - started, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="replays of the 50-call trace")
    parser.add_argument("--rounds", type=int, default=5, help="the best of this many runs")
    parser.add_argument("--profile", action="store_true", help="print the path's profile")
    args = parser.parse_args()
    reads, events = replays(args.repeat)
    if args.profile:
        cProfile.runctx("bench_path(reads)", globals(), {"reads": reads}, "/tmp/tracker.prof")
        pstats.Stats("/tmp/tracker.prof").sort_stats("tottime").print_stats(15)
    # Interleaved rounds, best of each: on a shared machine the other load falls on both alike.
    path_s = panoramisk_s = tracker_s = float("inf")
    for _ in range(args.rounds):
        seconds, tracked = bench_path(reads)
        path_s = min(path_s, seconds)
        seconds, parsed = bench_panoramisk(reads)
        panoramisk_s = min(panoramisk_s, seconds)
        tracker_s = min(tracker_s, bench_tracker_alone(tracked.events))
    path_rate = events / path_s
    panoramisk_rate = parsed / panoramisk_s
    tracker_rate = len(tracked.events) / tracker_s
    print(f"machine: {platform.machine()} {platform.python_implementation()} "
          f"{platform.python_version()}, load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"trace: {TRACE.name}, {events // args.repeat} events per replay, {args.repeat} "
          f"replays, best of {args.rounds} rounds")  # fmt: skip
    print(f"our framing + sieve + parsing + tracking: {events} events in {path_s:.3f} s = "
          f"{path_rate:,.0f} events/s ({len(tracked.events)} parsed and tracked, "
          f"{tracked.ended} calls ended)")  # fmt: skip
    print(f"panoramisk Message.from_line: {parsed} messages in {panoramisk_s:.3f} s = "
          f"{panoramisk_rate:,.0f} events/s")  # fmt: skip
    print(f"call tracker alone: {tracker_rate:,.0f} events/s")
    print(f"whole path / panoramisk's parse alone: {path_rate / panoramisk_rate:.2f}")
    print(
        json.dumps(
            {
                "framing_parsing_tracking_events_per_s": round(path_rate),
                "panoramisk_parse_events_per_s": round(panoramisk_rate),
                "path_vs_panoramisk": round(path_rate / panoramisk_rate, 3),
                "tracker_events_per_s": round(tracker_rate),
                "events": events,
                "events_tracked": len(tracked.events),
                "calls_ended": tracked.ended,
            }
        )
    )


if __name__ == "__main__":
    main()
