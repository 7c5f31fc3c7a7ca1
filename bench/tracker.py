"""Call-tracker throughput beside the cost of panoramisk's own parsing of the same bytes.

Replays the real 50-call trace (telephony/traces/sip/load_50_concurrent.ami) many times:

* ``tracker``: ``CallTracker.feed`` for every event, each replay renumbered so it makes 50 new
  calls; and, beside it, our whole path (framing on bytes, decoding, parsing, tracking);
* ``panoramisk``: ``panoramisk.message.Message.from_line`` on the same frames, which is what
  panoramisk does for every message before any application code runs.

Usage: ``python bench/tracker.py [--repeat N]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from panoramisk.message import Message

from telephony.ami_codec import AmiFramer
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, renumber

TRACE = RECORDED_TRACES / "sip" / "load_50_concurrent.ami"


def event_bytes() -> tuple[bytes, int]:
    """The trace's bytes after the banner, and how many events they hold."""
    raw = TRACE.read_bytes()
    body = raw[raw.index(b"\r\n") + 2 :]
    return body, body.count(b"\r\n\r\n")


def bench_tracker(body: bytes, repeat: int) -> tuple[float, float, int, int]:
    """Seconds to track ``repeat`` renumbered replays, seconds to frame and parse their bytes,
    events fed, calls ended."""
    framer = AmiFramer()
    framer.feed(b"Asterisk Call Manager/11.0.0\r\n")
    events = framer.feed(body)
    replays = [renumber(events, n) for n in range(repeat)]
    tracker = CallTracker()
    fed = ended = 0
    started = time.perf_counter()
    for replay in replays:
        for event in replay:
            fed += 1
            for domain_event in tracker.feed(event):
                ended += isinstance(domain_event, CallEnded)
    tracking_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(repeat):
        framer.feed(body)
    framing_seconds = time.perf_counter() - started
    return tracking_seconds, framing_seconds, fed, ended


def bench_panoramisk(body: bytes, repeat: int) -> tuple[float, int]:
    text = body.decode("utf-8", "ignore")
    parsed = 0
    started = time.perf_counter()
    for _ in range(repeat):
        for frame in text.split("\r\n\r\n"):
            if Message.from_line(frame.strip()) is not None:
                parsed += 1
    return time.perf_counter() - started, parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="replays of the 50-call trace")
    args = parser.parse_args()
    body, per_replay = event_bytes()
    tracking_s, framing_s, fed, ended = bench_tracker(body, args.repeat)
    panoramisk_s, parsed = bench_panoramisk(body, args.repeat)
    tracker_rate = fed / tracking_s
    pipeline_rate = fed / (tracking_s + framing_s)
    panoramisk_rate = parsed / panoramisk_s
    print(f"machine: {platform.machine()} {platform.python_implementation()} "
          f"{platform.python_version()}")  # fmt: skip
    print(f"trace: {TRACE.name}, {per_replay} events per replay, {args.repeat} replays")
    print(f"call tracker alone: {fed} events in {tracking_s:.3f} s = {tracker_rate:,.0f} events/s "
          f"({ended} calls ended)")  # fmt: skip
    print(f"our framing + parsing + tracking: {pipeline_rate:,.0f} events/s")
    print(f"panoramisk Message.from_line: {parsed} messages in {panoramisk_s:.3f} s = "
          f"{panoramisk_rate:,.0f} events/s")  # fmt: skip
    print(f"ratio (tracker / panoramisk parsing alone): {tracker_rate / panoramisk_rate:.2f}")
    print(
        json.dumps(
            {
                "tracker_events_per_s": round(tracker_rate),
                "panoramisk_parse_events_per_s": round(panoramisk_rate),
                "ratio": round(tracker_rate / panoramisk_rate, 3),
                "framing_parsing_tracking_events_per_s": round(pipeline_rate),
                "events": fed,
                "calls_ended": ended,
            }
        )
    )


if __name__ == "__main__":
    main()
