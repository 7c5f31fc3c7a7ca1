"""Which recording file holds whose voice, as ``dialplans/extensions_callbridge.conf`` names them.

Its ``callbridge-record`` subroutine starts MixMonitor on the customer's channel (on the agent's
own channel for an outside call an agent dials with 9, where it swaps ``r()`` and ``t()`` so
the names below hold either way) and writes three files into one folder, started together:

====================== =========================================== ==============
file                   what it holds                               speaker
====================== =========================================== ==============
``<uniqueid>.wav``     both sides mixed (the ``CC_RECFILE``)       ``mixed``
``<uniqueid>-in.wav``  the customer's voice alone                  ``customer``
``<uniqueid>-out.wav`` the agent's voice (or the greeting) alone   ``agent``
====================== =========================================== ==============

Without MixMonitor's option ``n`` the two direction files are padded with silence so that they
stay in step with each other: a time in one is the same moment in the other and in the mix.

A single stereo file (not what this dialplan writes, but what an interleaving recorder
gives) is read as left = the recorded channel's own party = ``customer``, right = the other
party = ``agent``, which matches the recorded channel this dialplan picks.
"""

from __future__ import annotations

from pathlib import Path

SIDE_SUFFIXES = {"customer": "-in", "agent": "-out"}
STEREO_SPEAKERS = ("customer", "agent")
"""Speaker of each channel of a stereo file: left, right."""


def direction_files(mixed: Path) -> dict[str, Path] | None:
    """``{"customer": <uniqueid>-in.wav, "agent": <uniqueid>-out.wav}`` beside the mixed
    ``<uniqueid>.wav`` when both exist, else None (transcribe the mixed file instead)."""
    sides = {
        speaker: mixed.with_name(f"{mixed.stem}{suffix}{mixed.suffix}")
        for speaker, suffix in SIDE_SUFFIXES.items()
    }
    return sides if all(path.is_file() for path in sides.values()) else None
