"""The live recogniser on real speech: partial words heard as they come, finals with Kaldi's
word times, and the utterance number a partial shares with the final that closes it."""

from __future__ import annotations

import soundfile
from speech_fixtures import ASR_SAMPLES, dither_free_model, manifest

from transcription.streaming import LiveResult, StreamingRecognizer

BATCH = 3200
"""0.1 s of 8 kHz 16-bit audio, what the live loop hands the recogniser at a time."""


def fed_live(tmp_path_factory) -> list[tuple[float, LiveResult]]:
    """The 8 kHz clips said one after the other (with a second of quiet after each), fed in
    live batches; every result with the seconds of audio fed when it came."""
    model = dither_free_model(tmp_path_factory.getbasetemp())
    recognizer = StreamingRecognizer(model, language="ko")
    pcm = b"".join(
        soundfile.read(ASR_SAMPLES / e["file"], dtype="int16")[0].tobytes() + bytes(16000)
        for e in manifest("ko")
        if e["sample_rate"] == 8000
    )
    results = []
    for at in range(0, len(pcm), BATCH):
        results += [(recognizer.seconds_fed, r) for r in recognizer.accept(pcm[at : at + BATCH])]
    return results + [(recognizer.seconds_fed, r) for r in recognizer.finish()]


def test_partials_share_their_final_utterance_number(tmp_path_factory):
    results = fed_live(tmp_path_factory)
    finals = [r.utterance for _, r in results if r.final]
    assert len(finals) >= 2 and finals == sorted(set(finals))
    for at, (_, partial) in enumerate(results):
        if partial.final:
            continue
        # the first result past this partial that is a final or of another utterance is its final
        after = (r for _, r in results[at:] if r.final or r.utterance != partial.utterance)
        assert next(after).utterance == partial.utterance


def test_a_partial_word_is_timed_when_first_heard(tmp_path_factory):
    heard: dict[tuple[int, int, str], float] = {}
    for fed, result in fed_live(tmp_path_factory):
        if result.final:
            continue
        for index, word in enumerate(result.words):
            assert word.start == word.end <= fed
            first = heard.setdefault((result.utterance, index, word.text), word.end)
            assert word.end == first, "a word's time moved while the partials kept it"


def test_most_final_words_were_heard_in_the_partials_before_their_final(tmp_path_factory):
    results = fed_live(tmp_path_factory)
    heard = {(r.utterance, w.text) for _, r in results if not r.final for w in r.words}
    final_words = [(r.utterance, w.text) for _, r in results if r.final for w in r.words]
    early = [key for key in final_words if key in heard]
    assert len(early) >= len(final_words) / 2, (len(early), len(final_words))
    for _, result in results:
        if result.final:
            assert all(w.start <= w.end for w in result.words)
