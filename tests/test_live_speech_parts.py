"""The pure parts of live speech: watch words found with their times, and which channel of a
call is which side (from AMI events shaped as the kit's Asterisk sends them)."""

from __future__ import annotations

import pytest

from crm_bridge.live_speech.channels import ChannelIndex, is_spy_event
from crm_bridge.live_speech.watch import find_watch_words
from transcription.transcript import Word


def words(*spec: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 1.0) for text, start, end in spec)


@pytest.mark.parametrize(
    ("said", "watch", "found"),
    [
        (words(("我要", 0.0, 0.4), ("投诉", 0.4, 0.9)), ["投诉"], [("投诉", 0, 0.4, 0.9)]),
        (words(("投", 1.0, 1.2), ("诉", 1.2, 1.5)), ["投诉"], [("投诉", 0, 1.0, 1.5)]),
        (words(("我要投诉了", 2.0, 3.0)), ["投诉"], [("投诉", 0, 2.0, 3.0)]),
        (words(("[1]", 0, 1), ("[2]", 1, 2), ("[3]", 2, 3), ("[1]", 3, 4), ("[5]", 4, 5)),
         ["12315"], [("12315", 0, 0, 5)]),
        (words(("退款", 0, 1), ("退款", 2, 3)), ["退款"], [("退款", 0, 0, 1), ("退款", 1, 2, 3)]),
        (words(("你好", 0, 1)), ["投诉", "律师"], []),
        (words(("하루", 4.5, 4.9), ("만원", 5.2, 5.6)), ["만원"], [("만원", 0, 5.2, 5.6)]),
        ((), ["投诉"], []),
        (words(("投诉", 0, 1)), ["", " "], []),
    ],
)  # fmt: skip
def test_watch_words_are_found_with_the_times_they_were_said(said, watch, found):
    hits = find_watch_words(said, watch)
    assert [(h.word, h.occurrence, h.start, h.end) for h in hits] == found


def channel(uniqueid, name, linkedid, context, state="6"):
    return {"Event": "Newchannel", "Uniqueid": uniqueid, "Channel": name, "Linkedid": linkedid,
            "Context": context, "ChannelState": state}  # fmt: skip


def test_an_inbound_queue_call_has_the_caller_and_the_answering_agent():
    index = ChannelIndex(["internal"])
    for event in (
        channel("1.0", "PJSIP/carrier-00000000", "1.0", "from-customers"),
        channel("1.1", "Local/1002@agents-00000000;1", "1.0", "agents"),
        channel("1.2", "Local/1002@agents-00000000;2", "1.0", "agents"),
        channel("1.3", "PJSIP/1002-00000001", "1.0", "internal"),
        channel("1.4", "PJSIP/1001-00000002", "1.0", "internal", state="5"),  # rang, not up
    ):
        index.feed(event)
    sides = index.sides("1.0", "1002")
    assert (sides.customer, sides.agent) == ("PJSIP/carrier-00000000", "PJSIP/1002-00000001")
    assert index.talking() == {"1.0"}
    index.feed({"Event": "Hangup", "Uniqueid": "1.3"})
    assert index.sides("1.0", "1002").agent is None and not index.alive("PJSIP/1002-00000001")


def test_an_agent_dialling_out_is_the_agent_side():
    index = ChannelIndex(["internal"])
    index.replace([
        {**channel("2.0", "PJSIP/1001-00000005", "2.0", "internal"), "Event": "CoreShowChannel"},
        {**channel("2.1", "PJSIP/carrier-00000006", "2.0", "from-customers"),
         "Event": "CoreShowChannel"},
    ])  # fmt: skip
    sides = index.sides("2.0", None)
    assert (sides.customer, sides.agent) == ("PJSIP/carrier-00000006", "PJSIP/1001-00000005")


def test_a_channel_that_goes_up_later_counts_once_up():
    index = ChannelIndex(["internal"])
    index.feed(channel("3.0", "PJSIP/carrier-00000007", "3.0", "outbound-campaign", state="0"))
    assert index.sides("3.0", None).items() == []
    index.feed({"Event": "Newstate", "Uniqueid": "3.0", "ChannelState": "6"})
    assert index.sides("3.0", None).items() == [("customer", "PJSIP/carrier-00000007")]


def test_spy_channels_are_never_indexed_and_are_recognised():
    index = ChannelIndex(["internal"])
    spy = channel("cblive-1", "Local/x@callbridge-live-audio-00000001;1", "cblive-1", "x")
    index.feed(spy)
    assert len(index) == 0 and is_spy_event(spy)
    assert not is_spy_event(channel("1.0", "PJSIP/carrier-00000000", "1.0", "from-customers"))


def test_a_channel_name_unfit_for_chanspy_is_never_offered():
    index = ChannelIndex(["internal"])
    index.feed(channel("4.0", "PJSIP/carrier,x-00000000", "4.0", "from-customers"))
    assert index.sides("4.0", None).items() == []
