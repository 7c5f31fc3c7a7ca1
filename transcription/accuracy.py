"""Character error rate of a transcript against a reference text.

Counted on text with spaces, punctuation and bracketed numbers removed: Chinese models put
spaces between words, and the Korean model writes numbers as ``[9]`` where references spell
them out, so neither should count as an error of the recogniser.
"""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz.distance import Levenshtein

_BRACKETED = re.compile(r"\[[^\]]*\]")


def normalise(text: str) -> str:
    """The characters that count: no spaces, no punctuation, no ``[..]``, NFC, lower case."""
    text = _BRACKETED.sub("", unicodedata.normalize("NFC", text))
    return "".join(
        char.lower()
        for char in text
        if not char.isspace() and not unicodedata.category(char).startswith("P")
    )


def character_error_rate(hypothesis: str, reference: str) -> float:
    """Edits (insertions, deletions, substitutions) per reference character."""
    ref = normalise(reference)
    if not ref:
        raise ValueError("the reference has no characters to count")
    return Levenshtein.distance(normalise(hypothesis), ref) / len(ref)
