"""Recognition of a live stream: Vosk fed as the audio arrives, partial and final results.

One :class:`StreamingRecognizer` per side of a call (``KaldiRecognizer`` is mono). The model
is the shared one of :func:`transcription.engine.load_model`. ``accept`` blocks for as long as
Kaldi decodes the audio it is given (Vosk releases the GIL meanwhile): run it on a worker
thread, never on the event loop.

A *final* result is an utterance Kaldi's endpointing closed (a pause after speech); its words
will not change. A *partial* is the best guess so far of the utterance still being spoken,
with word times (``SetPartialWords``); it may change with the next audio. Word times count
seconds from the first sample of the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import vosk

from transcription.engine import join_words, load_model
from transcription.transcript import Word

SAMPLE_RATE = 8000


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
        self.seconds_fed = 0.0

    def accept(self, pcm: bytes) -> list[LiveResult]:
        """Feed audio; the final result it closed, else the partial if it changed."""
        self.seconds_fed += len(pcm) / (2 * self.sample_rate)
        if self._recognizer.AcceptWaveform(pcm):
            self._last_partial = ()
            return self._results(self._recognizer.Result(), final=True)
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
