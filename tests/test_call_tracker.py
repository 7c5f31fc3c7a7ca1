"""The call tracker against real Asterisk 22.10.1 traces (telephony/traces/README.md).

Each scenario is recorded twice, once through a SIP trunk and phones (``sip``), once with Local
channels only (``local``, where even the inbound callers are Originates): the tracker must tell
the same story for both.
"""

from __future__ import annotations

import random

import pytest

from telephony.call_events import (
    AgentRinging,
    AgentRingStopped,
    CallAnswered,
    CallEnded,
    CallOffered,
    CallTransferred,
    Direction,
    Disposition,
    EndReason,
    RecordingStarted,
)
from telephony.call_tracker import CallTracker, agent_from_channel, agent_from_interface
from telephony.trace_files import RECORDED_TRACES, load_trace

TRACES = RECORDED_TRACES
MODES = ["sip", "local"]


def replay(name: str, mode: str) -> tuple[CallTracker, list]:
    tracker = CallTracker(server="pbx1")
    out = tracker.feed_all(load_trace(TRACES / mode / f"{name}.ami").events)
    return tracker, out


def ended(out: list) -> list:
    return [e.call for e in out if isinstance(e, CallEnded)]


def kinds(out: list, linkedid: str) -> list[str]:
    return [type(e).__name__ for e in out if e.call.linkedid == linkedid]


# (scenario, direction, caller, callee, queue, agent, disposition, hangup cause,
#  wait seconds (approx), talk seconds (approx), transferred_to)
SINGLE_CALLS = [
    ("a_inbound_answered_1001", "inbound", "13800138000", "4008001234", "support", "1001",
     "answered", 16, 2.0, 6.0, None),
    ("b_inbound_abandoned", "inbound", "13800138000", "4008001234", "support", None,
     "abandoned", 0, 6.0, 0.0, None),
    ("c_inbound_1001_noanswer_1002_answers", "inbound", "13800138000", "4008001234", "support",
     "1002", "answered", 16, 14.0, 8.5, None),
    ("d_outbound_return_visit_answered", "outbound", "4008001234", "13900000001", None, None,
     "answered", 16, 2.0, 7.4, None),
    ("e1_outbound_busy", "outbound", "4008001234", "13900000002", None, None,
     "busy", 17, 0.0, 0.0, None),
    ("e2_outbound_noanswer", "outbound", "4008001234", "13900000003", None, None,
     "no_answer", 19, 8.2, 0.0, None),
    ("e3_outbound_congestion", "outbound", "4008001234", "13900000004", None, None,
     "failed", 34, 0.0, 0.0, None),
    ("h1_blind_transfer_1001_to_1002", "inbound", "13800138000", "4008001234", "support", "1001",
     "answered", 16, 2.0, 19.5, "1002"),
]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name,direction,caller,callee,queue,agent,disposition,cause,wait,talk,transferred_to",
    SINGLE_CALLS,
    ids=[row[0] for row in SINGLE_CALLS],
)
def test_single_call_scenarios(
    mode, name, direction, caller, callee, queue, agent, disposition, cause, wait, talk,
    transferred_to,
):  # fmt: skip
    tracker, out = replay(name, mode)
    calls = ended(out)
    assert len(calls) == 1, "every leg of the call shares one Linkedid: one call"
    call = calls[0]
    assert call.server == "pbx1"
    assert call.direction == direction
    assert call.caller == caller
    assert call.callee == callee
    assert call.queue == queue
    assert call.agent == agent
    assert call.disposition == disposition
    assert call.hangup_cause == cause
    assert call.wait_seconds == pytest.approx(wait, abs=0.6)
    assert call.talk_seconds == pytest.approx(talk, abs=0.6)
    assert call.transferred_to == transferred_to
    assert call.end_reason is EndReason.HANGUP
    assert call.offered_at <= (call.answered_at or call.ended_at) <= call.ended_at
    assert tracker.calls_in_flight == 0
    assert tracker.skipped == 0


@pytest.mark.parametrize("mode", MODES)
def test_answered_inbound_call_tells_its_story_in_order(mode):
    _, out = replay("a_inbound_answered_1001", mode)
    linkedid = ended(out)[0].linkedid
    assert kinds(out, linkedid) == [
        "CallOffered",
        "RecordingStarted",
        "AgentRinging",
        "CallAnswered",
        "CallEnded",
    ]
    ringing = next(e for e in out if isinstance(e, AgentRinging))
    assert ringing.agent == "1001"
    assert ringing.call.caller == "13800138000"
    assert ringing.call.caller_name == "张三"
    offered = next(e for e in out if isinstance(e, CallOffered))
    assert offered.call.direction is Direction.INBOUND
    recording = next(e for e in out if isinstance(e, RecordingStarted))
    assert recording.path.endswith(f"{linkedid}.wav")


@pytest.mark.parametrize("mode", MODES)
def test_agent_who_does_not_answer_stops_ringing_before_the_next_one_rings(mode):
    _, out = replay("c_inbound_1001_noanswer_1002_answers", mode)
    agent_events = [
        (type(e).__name__, e.agent)
        for e in out
        if isinstance(e, AgentRinging | AgentRingStopped | CallAnswered)
    ]
    assert agent_events == [
        ("AgentRinging", "1001"),
        ("AgentRingStopped", "1001"),
        ("AgentRinging", "1002"),
        ("CallAnswered", "1002"),
    ]
    assert ended(out)[0].agents_rung == ["1001", "1002"]


@pytest.mark.parametrize("mode", MODES)
def test_abandoned_caller_stops_the_ringing_and_is_not_answered(mode):
    _, out = replay("b_inbound_abandoned", mode)
    assert not any(isinstance(e, CallAnswered) for e in out)
    assert any(isinstance(e, AgentRingStopped) and e.agent == "1001" for e in out)
    assert ended(out)[0].answered_at is None


@pytest.mark.parametrize("mode", MODES)
def test_blind_transfer_keeps_one_call_and_names_the_target(mode):
    _, out = replay("h1_blind_transfer_1001_to_1002", mode)
    transfer = next(e for e in out if isinstance(e, CallTransferred))
    assert (transfer.kind, transfer.from_agent, transfer.to) == ("blind", "1001", "1002")
    assert len(ended(out)) == 1


def test_transfer_target_phone_rings_and_answers_on_sip():
    _, out = replay("h1_blind_transfer_1001_to_1002", "sip")
    after = out[next(i for i, e in enumerate(out) if isinstance(e, CallTransferred)) :]
    assert [(type(e).__name__, getattr(e, "agent", None)) for e in after[1:3]] == [
        ("AgentRinging", "1002"),
        ("CallAnswered", "1002"),
    ]


@pytest.mark.parametrize("mode", MODES)
def test_outbound_originate_answered_carries_campaign_and_recording(mode):
    _, out = replay("d_outbound_return_visit_answered", mode)
    call = ended(out)[0]
    assert call.campaign == "return-visit-2024w47"
    assert call.recording_path and call.recording_path.endswith(".wav")
    answered = [e for e in out if isinstance(e, CallAnswered)]
    assert len(answered) == 1 and answered[0].agent is None


@pytest.mark.parametrize("mode", MODES)
def test_five_concurrent_callers_are_five_calls_served_in_turn(mode):
    _, out = replay("f_inbound_5_concurrent", mode)
    calls = sorted(ended(out), key=lambda c: c.caller)
    assert [c.caller for c in calls] == [f"1380013800{i}" for i in range(1, 6)]
    assert all(c.disposition == Disposition.ANSWERED for c in calls)
    assert {c.agent for c in calls} == {"1001", "1002"}
    waits = [c.wait_seconds for c in calls]
    assert waits[0] < 5 and waits[-1] > 20, "the last caller waited for two calls before theirs"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [20, 50])
def test_load_traces_give_every_call_once(mode, size):
    tracker, out = replay(f"load_{size}_concurrent", mode)
    calls = ended(out)
    assert len(calls) == size
    assert len({c.linkedid for c in calls}) == size
    assert all(c.direction == "inbound" and c.disposition == "answered" for c in calls)
    assert all(c.agent and c.agent.startswith("20") for c in calls)
    assert tracker.calls_in_flight == 0


def _reordered(events: list[dict], seed: int) -> list[dict]:
    """Move Cdr and OriginateResponse events a few places, as Asterisk does between runs."""
    rng = random.Random(seed)
    events = list(events)
    movable = [i for i, e in enumerate(events) if e.get("Event") in ("Cdr", "OriginateResponse")]
    for index in movable:
        event = events.pop(index)
        events.insert(max(0, min(len(events), index + rng.randint(-4, 4))), event)
    return events


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "name", ["a_inbound_answered_1001", "d_outbound_return_visit_answered", "e1_outbound_busy"]
)
def test_result_does_not_depend_on_the_order_of_cdr_and_originate_response(mode, name):
    events = load_trace(TRACES / mode / f"{name}.ami").events
    expected = ended(CallTracker().feed_all(events))[0]
    for seed in range(15):
        got = ended(CallTracker().feed_all(_reordered(events, seed)))
        assert len(got) == 1
        assert (got[0].direction, got[0].disposition, got[0].callee, got[0].agent) == (
            expected.direction,
            expected.disposition,
            expected.callee,
            expected.agent,
        )


def test_repeated_events_after_the_end_do_not_reopen_the_call():
    events = load_trace(TRACES / "sip" / "a_inbound_answered_1001.ami").events
    tracker = CallTracker()
    first = ended(tracker.feed_all(events))
    again = tracker.feed_all(events)
    assert len(first) == 1
    assert again == []
    assert tracker.calls_in_flight == 0


def test_unknown_and_malformed_events_are_skipped_not_fatal():
    tracker = CallTracker()
    bad = [
        {"Event": "SomethingNew", "Foo": "bar"},
        {"Event": "Newchannel"},  # no Uniqueid or Linkedid
        {"Event": "Hangup", "Uniqueid": "nope"},
        {"Event": "DialBegin"},
        {"NoEvent": "x"},
        {},
    ]
    assert tracker.feed_all(bad) == []
    assert tracker.skipped == 1
    events = load_trace(TRACES / "sip" / "a_inbound_answered_1001.ami").events
    assert len(ended(tracker.feed_all(events))) == 1


def _cut(events: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    cut = int(len(events) * fraction)
    return events[:cut], events[cut:]


def test_resync_closes_a_call_that_ended_while_disconnected():
    events = load_trace(TRACES / "sip" / "a_inbound_answered_1001.ami").events
    before, _lost = _cut(events, 0.5)
    tracker = CallTracker()
    tracker.feed_all(before)
    assert tracker.calls_in_flight == 1
    resync_at = float(events[-1]["Timestamp"]) + 30
    out = tracker.resync([], started_at=resync_at)
    (call,) = ended(out)
    assert call.end_reason is EndReason.LOST_WHILE_DISCONNECTED
    assert call.ended_at == resync_at
    assert call.agent == "1001" and call.disposition == "answered"
    assert tracker.calls_in_flight == 0


def test_resync_keeps_a_call_whose_channels_are_still_up_and_it_ends_normally():
    events = load_trace(TRACES / "sip" / "a_inbound_answered_1001.ami").events
    before, after = _cut(events, 0.5)
    tracker = CallTracker()
    tracker.feed_all(before)
    live = [
        {"Event": "CoreShowChannel", **{k: e[k] for k in ("Uniqueid", "Linkedid", "Channel")}}
        for e in before
        if e.get("Event") == "Newchannel"
    ]
    assert tracker.resync(live, started_at=float(before[-1]["Timestamp"]) + 1) == []
    (call,) = ended(tracker.feed_all(after))
    assert call.end_reason is EndReason.HANGUP


def test_resync_adopts_a_call_that_began_while_disconnected():
    tracker = CallTracker()
    snapshot = [
        {
            "Event": "CoreShowChannel",
            "Channel": "PJSIP/carrier-00000099",
            "Uniqueid": "1795350000.1",
            "Linkedid": "1795350000.1",
            "ChannelState": "6",
            "CallerIDNum": "13800138000",
            "CallerIDName": "张三",
            "Context": "from-customers",
            "Exten": "4008001234",
            "Application": "Queue",
            "Duration": "00:00:12",
        }
    ]
    out = tracker.resync(snapshot, started_at=1795350100.0)
    offered = [e for e in out if isinstance(e, CallOffered)]
    assert len(offered) == 1
    assert offered[0].call.direction is Direction.INBOUND
    assert offered[0].call.caller == "13800138000"
    assert offered[0].call.offered_at == 1795350088.0
    hangup = {
        "Event": "Hangup",
        "Uniqueid": "1795350000.1",
        "Linkedid": "1795350000.1",
        "Channel": "PJSIP/carrier-00000099",
        "Cause": "16",
        "Timestamp": "1795350130.0",
    }
    (call,) = ended(tracker.feed(hangup))
    assert call.disposition == "abandoned" and call.ended_at == 1795350130.0


def test_resync_leaves_calls_that_showed_life_after_it_began():
    events = load_trace(TRACES / "sip" / "a_inbound_answered_1001.ami").events
    tracker = CallTracker()
    stamped = [{**e, "_rx": "100.0"} for e in events[:40]]
    tracker.feed_all(stamped)
    assert tracker.resync([], started_at=50.0) == []
    assert tracker.calls_in_flight == 1


def test_attended_transfer_joins_the_consultation_into_the_customer_call():
    """Agent 1001 consults 1002 from the phone, then completes the transfer."""

    def ev(name, uniqueid, linkedid, channel, **extra):
        return {"Event": name, "Uniqueid": uniqueid, "Linkedid": linkedid, "Channel": channel,
                "Timestamp": str(extra.pop("t")), **extra}  # fmt: skip

    customer, agent1, agent1b, agent2 = "100.1", "100.2", "200.1", "200.2"
    events = [
        ev("Newchannel", customer, customer, "PJSIP/carrier-1", t=100, ChannelState="4",
           CallerIDNum="13800138000", Context="from-customers", Exten="4008001234"),
        ev("Newchannel", agent1, customer, "PJSIP/1001-1", t=101, ChannelState="0"),
        {"Event": "DialBegin", "Uniqueid": customer, "Linkedid": customer,
         "Channel": "PJSIP/carrier-1", "DestUniqueid": agent1, "DestLinkedid": customer,
         "DestChannel": "PJSIP/1001-1", "DialString": "1001", "Timestamp": "101"},
        {"Event": "DialEnd", "Uniqueid": customer, "Linkedid": customer,
         "Channel": "PJSIP/carrier-1", "DestUniqueid": agent1, "DestLinkedid": customer,
         "DestChannel": "PJSIP/1001-1", "DialStatus": "ANSWER", "Timestamp": "103"},
        # the consultation: 1001's phone places a new call to 1002
        ev("Newchannel", agent1b, agent1b, "PJSIP/1001-2", t=110, ChannelState="4",
           CallerIDNum="1001", Context="internal", Exten="1002"),
        ev("Newchannel", agent2, agent1b, "PJSIP/1002-3", t=110, ChannelState="0"),
        {"Event": "DialBegin", "Uniqueid": agent1b, "Linkedid": agent1b,
         "Channel": "PJSIP/1001-2", "DestUniqueid": agent2, "DestLinkedid": agent1b,
         "DestChannel": "PJSIP/1002-3", "DialString": "1002", "Timestamp": "110"},
        {"Event": "DialEnd", "Uniqueid": agent1b, "Linkedid": agent1b,
         "Channel": "PJSIP/1001-2", "DestUniqueid": agent2, "DestLinkedid": agent1b,
         "DestChannel": "PJSIP/1002-3", "DialStatus": "ANSWER", "Timestamp": "112"},
        {"Event": "AttendedTransfer", "Result": "Success", "Timestamp": "120",
         "OrigTransfererChannel": "PJSIP/1001-1", "OrigTransfererUniqueid": agent1,
         "OrigTransfererLinkedid": customer, "SecondTransfererChannel": "PJSIP/1001-2",
         "SecondTransfererUniqueid": agent1b, "SecondTransfererLinkedid": agent1b,
         "DestType": "Bridge"},
        ev("Hangup", agent1, customer, "PJSIP/1001-1", t=120, Cause="16"),
        ev("Hangup", agent1b, agent1b, "PJSIP/1001-2", t=120, Cause="16"),
        ev("Hangup", customer, customer, "PJSIP/carrier-1", t=150, Cause="16"),
        ev("Hangup", agent2, agent1b, "PJSIP/1002-3", t=150, Cause="16"),
    ]  # fmt: skip
    tracker = CallTracker()
    out = tracker.feed_all(events)
    transfer = next(e for e in out if isinstance(e, CallTransferred))
    assert (transfer.kind, transfer.from_agent, transfer.to) == ("attended", "1001", "1002")
    calls = ended(out)
    assert [c.linkedid for c in calls] == [customer], "the consultation is not a call of its own"
    assert calls[0].agent == "1001" and calls[0].transferred_to == "1002"
    assert calls[0].ended_at == 150.0
    assert tracker.calls_in_flight == 0


def test_agent_dialling_out_from_the_phone_is_outbound_with_the_agent():
    events = [
        {"Event": "Newchannel", "Uniqueid": "300.1", "Linkedid": "300.1",
         "Channel": "PJSIP/1001-00000010", "ChannelState": "4", "CallerIDNum": "1001",
         "Context": "internal", "Exten": "913900000001", "Timestamp": "300"},
        {"Event": "Newchannel", "Uniqueid": "300.2", "Linkedid": "300.1",
         "Channel": "PJSIP/carrier-00000011", "ChannelState": "0", "Timestamp": "300.1"},
        {"Event": "DialBegin", "Uniqueid": "300.1", "Linkedid": "300.1",
         "Channel": "PJSIP/1001-00000010", "DestUniqueid": "300.2", "DestLinkedid": "300.1",
         "DestChannel": "PJSIP/carrier-00000011", "DialString": "13900000001@carrier",
         "Timestamp": "300.1"},
        {"Event": "DialEnd", "Uniqueid": "300.1", "Linkedid": "300.1",
         "Channel": "PJSIP/1001-00000010", "DestUniqueid": "300.2", "DestLinkedid": "300.1",
         "DestChannel": "PJSIP/carrier-00000011", "DialStatus": "BUSY", "Timestamp": "302"},
        {"Event": "Hangup", "Uniqueid": "300.2", "Linkedid": "300.1",
         "Channel": "PJSIP/carrier-00000011", "Cause": "17", "Timestamp": "302"},
        {"Event": "Hangup", "Uniqueid": "300.1", "Linkedid": "300.1",
         "Channel": "PJSIP/1001-00000010", "Cause": "16", "Timestamp": "303"},
    ]  # fmt: skip
    out = CallTracker().feed_all(events)
    assert not any(isinstance(e, AgentRinging) for e in out)
    (call,) = ended(out)
    assert (call.direction, call.caller, call.callee, call.agent) == (
        "outbound",
        "1001",
        "13900000001",
        "1001",
    )
    assert (call.disposition, call.hangup_cause) == ("busy", 17)


@pytest.mark.parametrize(
    "value,expected",
    [("PJSIP/1001-0000004b", "1001"), ("SIP/1002-00ab", "1002"), ("PJSIP/1001", "1001")],
)
def test_agent_from_channel(value, expected):
    assert agent_from_channel(value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [("Local/1001@agents/n", "1001"), ("PJSIP/1002", "1002"), ("Local/2007@agents-load/n", "2007")],
)
def test_agent_from_interface(value, expected):
    assert agent_from_interface(value) == expected
