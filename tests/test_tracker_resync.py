"""The tracker taking over calls it first meets in a resync (CoreShowChannels after a
(re)connect), over a real socket to the simulator replaying the recorded outbound call
(telephony/traces/*/d_outbound_return_visit_answered.ami).

An Originate's channel, while it rings out, sits in its endpoint's context: in the recorded
call that is ``from-customers``, the context customers call in on. Taken over then, the call
is still outbound, and answered when the customer answers.
"""

from __future__ import annotations

import asyncio

import pytest

from telephony.ami_connection import AmiConfig, AmiConnection
from telephony.call_events import CallEnded, Direction, Disposition
from telephony.call_tracker import CallTracker
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

SECRET = "resync-test-secret"


def split_after(events: list[dict], event: str, state: str) -> tuple[list[dict], list[dict]]:
    """The events up to and including the root channel's first ``event`` in ``state``."""
    cut = next(
        i for i, e in enumerate(events)
        if e.get("Event") == event and e.get("ChannelState") == state
        and e.get("Uniqueid") == e.get("Linkedid")
    )  # fmt: skip
    return events[: cut + 1], events[cut + 1 :]


@pytest.mark.parametrize("mode", ["sip", "local"])
@pytest.mark.parametrize(
    "taken_over", [("Newstate", "5"), ("Newstate", "6")], ids=["ringing-out", "answered"]
)
async def test_an_outbound_call_taken_over_mid_way_is_outbound_and_answered(mode, taken_over):
    trace = load_trace(RECORDED_TRACES / mode / "d_outbound_return_visit_answered.ami")
    before, after = split_after(trace.call_events, *taken_over)
    tracker = CallTracker(server="pbx1")
    out: list = []
    async with AmiSimulator(secret=SECRET) as simulator:
        await simulator.play_events(before, speed=0, renumber=False)  # nobody listening yet
        resynced = asyncio.Event()

        def on_resync(channels, started_at):
            out.extend(tracker.resync(channels, started_at))
            resynced.set()

        config = AmiConfig(host="127.0.0.1", port=simulator.port, username="bridge", secret=SECRET)
        connection = AmiConnection(
            config, on_event=lambda ev: out.extend(tracker.feed(ev)), on_resync=on_resync
        )
        await connection.start()
        try:
            await asyncio.wait_for(resynced.wait(), 10)
            assert tracker.calls_in_flight == 1
            await simulator.play_events(after, speed=0, renumber=False)
            async with asyncio.timeout(10):
                while not any(isinstance(e, CallEnded) for e in out):
                    await asyncio.sleep(0.02)
        finally:
            await connection.stop()
    (call,) = [e.call for e in out if isinstance(e, CallEnded)]
    assert call.direction is Direction.OUTBOUND
    assert call.disposition is Disposition.ANSWERED
    assert call.answered_at is not None
