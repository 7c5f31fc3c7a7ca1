"""Finding watch words in a live result, with the time each was said.

A recogniser may give a watch word as one word (投诉), split (投 诉), or inside a longer word
(投诉了). The words' texts are joined without spaces and the watch word looked for in that;
its start is the start of the word holding its first character, its end the end of the word
holding its last. The Korean model writes digits as ``[4]``: brackets are dropped first, so
``12315`` is found in ``[1] [2] [3] [1] [5]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from transcription.transcript import Word


@dataclass(frozen=True)
class Hit:
    word: str
    occurrence: int
    """0 for the first time this utterance says it, 1 for the second …"""
    start: float
    end: float


def _plain(text: str) -> str:
    return text.replace("[", "").replace("]", "").replace(" ", "")


def find_watch_words(words: tuple[Word, ...], watch: Iterable[str]) -> list[Hit]:
    owner: list[int] = []
    joined = ""
    for index, word in enumerate(words):
        plain = _plain(word.text)
        joined += plain
        owner += [index] * len(plain)
    hits: list[Hit] = []
    for target in {_plain(w) for w in watch if _plain(w)}:
        at, occurrence = joined.find(target), 0
        while at >= 0:
            first, last = words[owner[at]], words[owner[at + len(target) - 1]]
            hits.append(Hit(target, occurrence, first.start, last.end))
            occurrence += 1
            at = joined.find(target, at + len(target))
    return sorted(hits, key=lambda hit: (hit.start, hit.word))
