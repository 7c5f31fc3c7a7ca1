"""The pure parts of live speech: watch words found with their times, which channel of a call
is which side (from AMI events shaped as the kit's Asterisk sends them), and the pauses that
close an utterance early."""

from __future__ import annotations

import numpy as np
import pytest

from crm_bridge.live_speech.channels import ChannelIndex, is_spy_event
from crm_bridge.live_speech.watch import find_watch_words
from transcription.streaming import SAMPLE_RATE, PauseDetector
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


def line(*parts: tuple[str, float]) -> bytes:
    """8 kHz 16-bit audio: ("speech", s) a loud 300 Hz tone with a syllable rhythm, ("hiss", s)
    the line's low noise, ("loud hiss", s) a noisier line."""
    rng = np.random.default_rng(3)
    out = []
    for kind, seconds in parts:
        n = int(seconds * SAMPLE_RATE)
        t = np.arange(n) / SAMPLE_RATE
        if kind == "speech":
            wave = 6000 * np.sin(2 * np.pi * 300 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        else:
            wave = rng.normal(0, 40 if kind == "hiss" else 400, n)
        out.append(wave.astype(np.int16))
    return np.concatenate(out).tobytes()


def pauses_heard(audio: bytes, chunk_seconds: float = 0.1) -> list[float]:
    """Feed ``audio`` in chunks as a stream arrives: the seconds at which a pause was told."""
    detector, step, told = PauseDetector(), int(chunk_seconds * SAMPLE_RATE) * 2, []
    for at in range(0, len(audio), step):
        if detector.paused(audio[at : at + step]):
            told.append((at + step) / (2 * SAMPLE_RATE))
    return told


def test_a_pause_after_speech_is_told_once_half_a_second_into_it():
    told = pauses_heard(line(("hiss", 1.0), ("speech", 2.0), ("hiss", 2.0), ("speech", 1.0),
                             ("hiss", 0.3), ("speech", 1.0), ("hiss", 1.5)))  # fmt: skip
    assert told == pytest.approx([3.5, 6.3 + 1.0 + 0.5], abs=0.11)  # not in the 0.3 s gap


def test_a_steady_line_is_no_speech_however_noisy_and_a_noisier_one_is_followed():
    assert pauses_heard(line(("hiss", 5.0))) == []
    assert pauses_heard(line(("loud hiss", 5.0))) == []
    # a line 20 dB noisier from one moment on: the floor follows within a second (a pause
    # may be told once then, which closes nothing unless words are pending) ...
    told = pauses_heard(line(("hiss", 3.0), ("loud hiss", 8.0)))
    assert len(told) <= 1 and all(3.0 < at < 4.6 for at in told)
    # ... and on the noisier line speech and the pause after it are still told
    told = pauses_heard(line(("loud hiss", 6.0), ("speech", 1.0), ("loud hiss", 1.0)))
    assert told == pytest.approx([7.5], abs=0.11)


def test_frames_split_across_chunks_are_read_whole():
    audio = line(("hiss", 0.5), ("speech", 1.0), ("hiss", 1.0))
    assert pauses_heard(audio, chunk_seconds=0.0137) == pytest.approx(pauses_heard(audio), abs=0.02)
