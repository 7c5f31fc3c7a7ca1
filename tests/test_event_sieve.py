"""The event sieve (telephony/ami_codec.py ``EventSieve``): frames dropped before parsing.

The sieve is only right if the tracker tells the same story without what it drops. That is
checked on every recorded trace (telephony/traces/), frame by frame as the bytes come off the
wire.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from telephony.ami_codec import BANNER_PREFIX, AmiFramer, EventSieve, parse_frame_dict
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES

TRACE_FILES = sorted(RECORDED_TRACES.glob("*/*.ami"))


def raw_frames(path: Path) -> list[bytes]:
    data = path.read_bytes()
    framer = AmiFramer(expect_banner=data.startswith(BANNER_PREFIX), max_frame_bytes=len(data))
    return framer.feed_raw(data)


def story(frames: list[bytes]) -> list[tuple[str, object]]:
    """What a fresh tracker makes of ``frames``: each domain event with its call."""
    tracker = CallTracker(server="pbx1")
    out = []
    for raw in frames:
        event = parse_frame_dict(raw)
        if "Event" in event:
            out += [(type(e).__name__, e.call) for e in tracker.feed(event)]
    return out


@pytest.mark.parametrize("path", TRACE_FILES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_the_tracker_tells_the_same_story_without_what_the_sieve_drops(path: Path) -> None:
    frames = raw_frames(path)
    sieve = CallTracker().sieve()
    kept = [raw for raw in frames if sieve.keeps(raw)]
    assert story(kept) == story(frames)


def test_the_sieve_drops_most_of_a_busy_stream() -> None:
    frames = raw_frames(RECORDED_TRACES / "sip" / "load_50_concurrent.ami")
    sieve = CallTracker().sieve()
    dropped = [parse_frame_dict(raw)["Event"] for raw in frames if not sieve.keeps(raw)]
    assert len(dropped) > len(frames) / 2
    assert {"CEL", "BridgeEnter", "DeviceStateChange", "RTCPSent"} <= set(dropped)
    assert "AgentCalled" not in dropped and "Hangup" not in dropped


@pytest.mark.parametrize(
    "raw",
    [
        b"Response: Success\r\nActionID: 7\r\nMessage: Pong",
        b"Event: CoreShowChannel\r\nActionID: cb-1\r\nChannel: PJSIP/1001-00000001",
        b"Event: Shutdown\r\nShutdown: Cleanly\r\nRestart: True",
        b"Event: FullyBooted\r\nStatus: Fully Booted",
        b"Privilege: call,all\r\nEvent: CEL",
        b"Event: VarSet\r\nChannel: PJSIP/1-1\r\nVariable: CC_RECFILE\r\nValue: x.wav",
        b"Event: VarSet\r\nChannel: PJSIP/1-1\r\nValue: no variable header",
        b"Event: Hangup\nUniqueid: 1.1\nLinkedid: 1.1",
        b"Event: Hangup",
    ],
    ids=[
        "response",
        "answer-to-an-action",
        "shutdown",
        "fully-booted",
        "event-not-first",
        "watched-variable",
        "varset-without-variable",
        "lf-only",
        "single-line",
    ],
)
def test_the_sieve_keeps(raw: bytes) -> None:
    assert EventSieve({"Hangup", "VarSet"}, {"CC_RECFILE"}).keeps(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"Event: CEL\r\nEventName: CHAN_START",
        b"Event: VarSet\r\nChannel: PJSIP/1-1\r\nVariable: BRIDGEPEER\r\nValue: x",
        b"Event: VarSet\nVariable: CC_RECFILE_OTHER\nValue: x",
        b"Event: HangupRequest\r\nUniqueid: 1.1",
    ],
)
def test_the_sieve_drops(raw: bytes) -> None:
    assert not EventSieve({"Hangup", "VarSet"}, {"CC_RECFILE"}).keeps(raw)


def test_a_bridge_connection_reads_only_what_its_tracker_needs() -> None:
    """The sieve the bridge installs is the tracker's own (crm_bridge/calls/bridge.py)."""
    sieve = CallTracker().sieve()
    assert sieve.keeps(b"Event: AgentCalled\r\nQueue: support")
    assert not sieve.keeps(b"Event: QueueMemberStatus\r\nQueue: support")
