"""Recognition of a live stream: Vosk fed as the audio arrives, partial and final results.

One :class:`StreamingRecognizer` per side of a call (``KaldiRecognizer`` is mono). The model
is the shared one of :func:`transcription.engine.load_model`. ``accept`` blocks for as long as
Kaldi decodes the audio it is given (Vosk releases the GIL meanwhile): run it on a worker
thread, never on the event loop.

A *final* result is a closed utterance; its words will not change. Kaldi's own endpointing
closes one when it decodes enough silence after speech, which on a line with hiss can take many
seconds; a watch word said just before would then wait that long. So :class:`PauseDetector`
also closes the utterance when the audio's energy has stayed near the line's own noise floor
for ``PAUSE_SECONDS`` after speech. A *partial* is the best guess so far of the utterance
still being spoken, with word times (``SetPartialWords``); it may change with the next
audio. Word times count seconds from the first sample of the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import vosk

from transcription.engine import join_words, load_model
from transcription.transcript import Word

SAMPLE_RATE = 8000
PAUSE_SECONDS = 0.5
"""Quiet after speech that closes an utterance: a pause between sentences, not between words
(those are 0.1-0.3 s)."""
FRAME_SECONDS = 0.02
SPEECH_OVER_FLOOR = 4.0
"""A frame is speech when its RMS is this many times the noise floor (12 dB) ..."""
MIN_SPEECH_RMS = 200.0
"""... and above this (-44 dBFS): digital silence has a floor of zero."""
FLOOR_RISE = 0.005
"""How fast the floor follows a louder line, per frame (a few seconds to adapt); it drops at
once to a quieter frame."""


class PauseDetector:
    """Tells when speech has been followed by a pause, from the audio's energy alone.

    The noise floor is the line's quiet level: it drops at once to the quietest frame heard
    and rises slowly, so speech (short bursts far above it) does not lift it, and a line that
    grows noisier is followed within seconds.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self.frame_samples = int(sample_rate * FRAME_SECONDS)
        self.floor: float | None = None
        self._rest = np.zeros(0, dtype=np.int16)
        self._speech = False
        self._quiet = 0.0

    def paused(self, pcm: bytes) -> bool:
        """Feed 16-bit PCM; True when a pause after speech ended within it."""
        samples = np.concatenate([self._rest, np.frombuffer(pcm, dtype="<i2")])
        whole = len(samples) - len(samples) % self.frame_samples
        self._rest = samples[whole:]
        frames = samples[:whole].astype(np.float64).reshape(-1, self.frame_samples)
        paused = False
        for rms in np.sqrt(np.mean(frames * frames, axis=1)):
            paused |= self._frame(float(rms))
        return paused

    def _frame(self, rms: float) -> bool:
        floor = rms if self.floor is None or rms < self.floor else self.floor
        self.floor = floor + (rms - floor) * FLOOR_RISE
        if rms > max(SPEECH_OVER_FLOOR * floor, MIN_SPEECH_RMS):
            self._speech, self._quiet = True, 0.0
            return False
        self._quiet += FRAME_SECONDS
        if self._speech and self._quiet >= PAUSE_SECONDS:
            self._speech = False
            return True
        return False


@dataclass(frozen=True)
class LiveResult:
    final: bool
    words: tuple[Word, ...]
    text: str


class StreamingRecognizer:
    """Vosk over one live mono stream of 16-bit PCM."""

    def __init__(
        self, model_dir: Path, *, language: str = "zh", sample_rate: int = SAMPLE_RATE
    ) -> None:
        self.language = language
        self.sample_rate = sample_rate
        self._recognizer = vosk.KaldiRecognizer(load_model(Path(model_dir)), float(sample_rate))
        self._recognizer.SetWords(True)
        self._recognizer.SetPartialWords(True)
        self._last_partial: tuple[str, ...] = ()
        self._pauses = PauseDetector(sample_rate)
        self.seconds_fed = 0.0

    def accept(self, pcm: bytes) -> list[LiveResult]:
        """Feed audio; the final result it closed, else the partial if it changed."""
        self.seconds_fed += len(pcm) / (2 * self.sample_rate)
        paused = self._pauses.paused(pcm)
        if self._recognizer.AcceptWaveform(pcm):
            self._last_partial = ()
            return self._results(self._recognizer.Result(), final=True)
        if paused and self._last_partial:
            return self.finish()  # the next audio starts a new utterance
        partial = json.loads(self._recognizer.PartialResult())
        words = _words(partial.get("partial_result", ()))
        texts = tuple(word.text for word in words)
        if not words or texts == self._last_partial:
            return []
        self._last_partial = texts
        return [LiveResult(False, words, join_words(words, self.language))]

    def finish(self) -> list[LiveResult]:
        """The stream ended: whatever was still being said, as a final result."""
        self._last_partial = ()
        return self._results(self._recognizer.FinalResult(), final=True)

    def _results(self, raw: str, *, final: bool) -> list[LiveResult]:
        words = _words(json.loads(raw).get("result", ()))
        return [LiveResult(final, words, join_words(words, self.language))] if words else []


def _words(items: object) -> tuple[Word, ...]:
    return tuple(
        Word(
            text=item["word"],
            start=float(item["start"]),
            end=float(item["end"]),
            confidence=float(item.get("conf", 0.0)),
        )
        for item in items  # type: ignore[attr-defined]
    )
