"""The call tracker on sessions recorded from the PBX kit's Asterisk 22.11 with the product's
own account (``telephony/traces/kit/``): click-to-call, a PBX restart mid-call, and a resync
that finds a call the bridge never saw begin."""

from __future__ import annotations

from telephony.call_events import (
    AgentRinging,
    CallAnswered,
    CallEnded,
    CallOffered,
    Direction,
    Disposition,
    EndReason,
)
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, load_trace


def events_of(name: str) -> list[dict]:
    return list(load_trace(RECORDED_TRACES / "kit" / f"{name}.ami").events)


def ended(domain_events) -> list:
    return [e.call for e in domain_events if isinstance(e, CallEnded)]


def test_click_to_call_is_the_agents_outbound_call_answered_when_the_customer_answers():
    events = events_of("click_to_call_answered")
    response = next(i for i, e in enumerate(events) if e["Event"] == "OriginateResponse")
    dialplan = next(i for i, e in enumerate(events) if e["Event"] == "Newexten"
                    and e.get("Application") != "AppDial2")  # fmt: skip
    assert response < dialplan  # what real Asterisk does, and what misled the tracker
    tracker = CallTracker()
    out = tracker.feed_all(events)
    (call,) = ended(out)
    assert call.linkedid == "c2c-chan-1"
    assert call.direction is Direction.OUTBOUND and call.disposition is Disposition.ANSWERED
    assert (call.caller, call.callee, call.agent) == ("1001", "13900000001", "1001")
    assert call.originate_action_id == "c2c-x1"
    customer_answer = next(
        float(e["Timestamp"]) for e in events
        if e["Event"] == "DialEnd" and e.get("Channel", "").startswith("PJSIP/1001")
        and e["DialStatus"] == "ANSWER"
    )  # fmt: skip
    assert call.answered_at == customer_answer
    newchannel = next(e for e in events if e["Event"] == "Newchannel")
    assert call.offered_at == float(newchannel["Timestamp"])  # the call's first event
    last_hangup = max(float(e["Timestamp"]) for e in events if e["Event"] == "Hangup")
    assert call.ended_at == last_hangup
    assert call.agents_rung == []  # the customer's trunk channel is no agent
    (answered,) = [e for e in out if isinstance(e, CallAnswered)]
    assert answered.agent == "1001"


def test_the_hangups_of_a_pbx_restart_end_the_call_as_cut_by_it():
    events = events_of("core_restart_mid_call")
    causes = {e.get("Cause") for e in events if e["Event"] == "SoftHangupRequest"}
    assert "4" in causes
    (call,) = ended(CallTracker().feed_all(events))
    assert call.end_reason is EndReason.PBX_RESTART
    assert (call.disposition, call.agent, call.queue) == (Disposition.ANSWERED, "1002", "support")


def test_a_call_whose_hangups_never_came_before_shutdown_ends_at_the_resync_as_cut():
    events = events_of("core_restart_mid_call")
    until_cut = [e for e in events if e["Event"] != "Hangup"]  # the session ended first
    tracker = CallTracker()
    assert not ended(tracker.feed_all(until_cut))
    shutdown = next(float(e["Timestamp"]) for e in events if e["Event"] == "Shutdown")
    (call,) = ended(tracker.resync([], started_at=shutdown + 2))
    assert call.end_reason is EndReason.PBX_RESTART
    cut = min(float(e["Timestamp"]) for e in events
              if e["Event"] == "SoftHangupRequest" and e.get("Cause") == "4")  # fmt: skip
    assert call.ended_at == cut


def test_a_resync_rebuilds_a_call_it_never_saw_begin():
    channels = [e for e in events_of("resync_inbound_ringing") if e["Event"] == "CoreShowChannel"]
    at = 1796292432.0
    out = CallTracker().resync(channels, started_at=at)
    offered, ringing = out
    assert isinstance(offered, CallOffered) and isinstance(ringing, AgentRinging)
    call = ringing.call
    assert (call.direction, call.caller, call.callee) == (
        Direction.INBOUND, "13800138000", "4008001234")  # fmt: skip
    assert (call.queue, ringing.agent, call.agent) == ("support", "1002", None)
    assert call.offered_at == at - 4  # Duration 00:00:04 of the caller's channel


def test_a_rebuilt_call_answered_by_an_agent_is_answered_by_that_agent():
    channels = [e for e in events_of("resync_inbound_ringing") if e["Event"] == "CoreShowChannel"]
    up = [{**ch, "ChannelState": "6"} if ch["Channel"].startswith("PJSIP/1002") else ch
          for ch in channels]  # fmt: skip
    tracker = CallTracker()
    out = tracker.resync(up, started_at=1796292432.0)
    (answered,) = [e for e in out if isinstance(e, CallAnswered)]
    assert answered.agent == "1002" and answered.call.agent == "1002"
    (call,) = tracker.active_calls()
    assert call.answered_at == 1796292432.0 - 4
