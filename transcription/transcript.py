"""The transcript of one recording: speaker segments with timed, scored words.

Plain frozen dataclasses with a JSON form (``to_json`` / ``from_json``) so a transcript can be
stored in a database column and read back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SPEAKERS = ("agent", "customer", "mixed")
"""``agent`` and ``customer`` for one side of a call; ``mixed`` for a mono recording of both."""


@dataclass(frozen=True)
class Word:
    """One recognised word; times in seconds from the start of the recording."""

    text: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Segment:
    """One utterance of one speaker (one final result of the recogniser)."""

    speaker: str
    start: float
    end: float
    text: str
    words: tuple[Word, ...]


@dataclass(frozen=True)
class Transcript:
    """A whole recording: segments of every speaker in time order."""

    segments: tuple[Segment, ...]
    duration_seconds: float
    language: str

    def to_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "duration_seconds": self.duration_seconds,
            "segments": [
                {
                    "speaker": segment.speaker,
                    "start": segment.start,
                    "end": segment.end,
                    "text": segment.text,
                    "words": [
                        {
                            "text": word.text,
                            "start": word.start,
                            "end": word.end,
                            "confidence": word.confidence,
                        }
                        for word in segment.words
                    ],
                }
                for segment in self.segments
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transcript:
        return cls(
            segments=tuple(
                Segment(
                    speaker=str(segment["speaker"]),
                    start=float(segment["start"]),
                    end=float(segment["end"]),
                    text=str(segment["text"]),
                    words=tuple(
                        Word(
                            text=str(word["text"]),
                            start=float(word["start"]),
                            end=float(word["end"]),
                            confidence=float(word["confidence"]),
                        )
                        for word in segment["words"]
                    ),
                )
                for segment in data["segments"]
            ),
            duration_seconds=float(data["duration_seconds"]),
            language=str(data["language"]),
        )
