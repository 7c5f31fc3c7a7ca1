"""Recognition of a live stream: Vosk fed as the audio arrives, partial and final results.

One :class:`StreamingRecognizer` per side of a call (``KaldiRecognizer`` is mono). The model
is the shared one of :func:`transcription.engine.load_model`. ``accept`` blocks for as long as
Kaldi decodes the audio it is given (Vosk releases the GIL meanwhile): run it on a worker
thread, never on the event loop.

A *final* result is an utterance Kaldi's endpointing closed (a pause after speech); its words
will not change and carry Kaldi's word times. A *partial* is the best guess so far of the
utterance still being spoken; it may change with the next audio. Its words come without
Kaldi's times on purpose: aligning a partial's words (``SetPartialWords``) drops the word that
is still being said, so a word showed up in the partials a median 1.8 s after it ended,
against 0.6 s in the plain partial text. A partial word's time is instead when the stream
first heard it (start and end alike), which is never before the word's end. Times count
seconds from the first sample of the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
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
    utterance: int = 0
    """The utterance's number in the stream (0, 1, …): its partials and its final share it."""


@dataclass
class _Partial:
    """The utterance being spoken: its words so far and when each was first heard."""

    words: tuple[Word, ...] = ()
    number: int = 0
    heard: dict[tuple[int, str], float] = field(default_factory=dict)

    def update(self, texts: list[str], now: float) -> bool:
        """Take the partial's words; False when they are what they were."""
        if tuple(word.text for word in self.words) == tuple(texts):
            return False
        self.words = tuple(
            Word(text=text, start=at, end=at, confidence=0.0)
            for at, text in (
                (self.heard.setdefault((index, text), now), text)
                for index, text in enumerate(texts)
            )
        )
        return True

    def close(self) -> int:
        """The utterance ended (a final): the next one starts afresh; its number is returned."""
        number, self.number = self.number, self.number + 1
        self.words, self.heard = (), {}
        return number


class StreamingRecognizer:
    """Vosk over one live mono stream of 16-bit PCM."""

    def __init__(
        self, model_dir: Path, *, language: str = "zh", sample_rate: int = SAMPLE_RATE
    ) -> None:
        self.language = language
        self.sample_rate = sample_rate
        self._recognizer = vosk.KaldiRecognizer(load_model(Path(model_dir)), float(sample_rate))
        self._recognizer.SetWords(True)
        self._partial = _Partial()
        self.seconds_fed = 0.0

    def accept(self, pcm: bytes) -> list[LiveResult]:
        """Feed audio; the final result it closed, else the partial if it changed."""
        self.seconds_fed += len(pcm) / (2 * self.sample_rate)
        if self._recognizer.AcceptWaveform(pcm):
            return self._final(self._recognizer.Result())
        texts = json.loads(self._recognizer.PartialResult()).get("partial", "").split()
        if not texts or not self._partial.update(texts, self.seconds_fed):
            return []
        words = self._partial.words
        return [LiveResult(False, words, join_words(words, self.language), self._partial.number)]

    def finish(self) -> list[LiveResult]:
        """The stream ended: whatever was still being said, as a final result."""
        return self._final(self._recognizer.FinalResult())

    def _final(self, raw: str) -> list[LiveResult]:
        number = self._partial.close()
        words = tuple(
            Word(
                text=item["word"],
                start=float(item["start"]),
                end=float(item["end"]),
                confidence=float(item.get("conf", 0.0)),
            )
            for item in json.loads(raw).get("result", ())
        )
        return [LiveResult(True, words, join_words(words, self.language), number)] if words else []
