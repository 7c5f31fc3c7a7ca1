"""The demo's recordings, written where each replayed call will report its file.

On a real PBX, Asterisk's MixMonitor writes a call's recording and the call names it (the
``CC_RECFILE`` VarSet, the Cdr ``Recording`` header). The demo has no Asterisk, so before a call
is replayed the files it names are written into the recordings folder, through the same
confinement as any reported path (:class:`~crm_bridge.calls.recordings.RecordingsRoot`). What
the files hold (8 kHz mono 16-bit WAV, as Asterisk records):

- the recording the traced call itself left, where it left one (``telephony/traces/recordings``:
  what Asterisk played on those calls, its English ``demo-thanks`` prompt and hold music; the
  abandoned call's 44-byte empty file);
- for the traced calls that kept none (``c``, ``f``, and the answered calls the demo's dialler
  places), the recording of another traced call: the answered inbound call's, or the answered
  campaign call's for an outbound one;
- on the watch-word call, one real recorded sentence in the language of the speech model
  (``crm_bridge/demo/speech/README.md``), which holds the demo's watch word.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

from crm_bridge.calls.recordings import RecordingsRoot
from telephony.call_tracker.state import RECORDING_VARIABLES
from telephony.trace_files import RECORDED_TRACES

log = logging.getLogger(__name__)

TRACE_RECORDINGS = RECORDED_TRACES / "recordings"
SPEECH_DIR = Path(__file__).resolve().parent / "speech"
OWN_RECORDINGS = {
    "a_inbound_answered_1001": "sip_a_inbound_answered_1001.wav",
    "b_inbound_abandoned": "sip_b_abandoned_EMPTY_44_bytes.wav",
    "d_outbound_return_visit_answered": "sip_d_outbound_return_visit.wav",
    "h1_blind_transfer_1001_to_1002": "sip_h1_blind_transfer_1001_to_1002.wav",
}
"""The traced calls that left a recording, and its file in ``telephony/traces/recordings``."""
INBOUND_STAND_IN = TRACE_RECORDINGS / OWN_RECORDINGS["a_inbound_answered_1001"]
OUTBOUND_STAND_IN = TRACE_RECORDINGS / OWN_RECORDINGS["d_outbound_return_visit_answered"]


def trace_audio(trace: str) -> Path:
    """The sound a replay of ``trace`` records: its own recording, else a stand-in."""
    own = OWN_RECORDINGS.get(trace)
    return TRACE_RECORDINGS / own if own else INBOUND_STAND_IN


def spoken_sentence(language: str) -> Path:
    """The real sentence of the watch-word call, in ``language`` (``zh`` or ``ko``)."""
    return SPEECH_DIR / f"{language}.wav"


def reported_recordings(events: Iterable[Mapping[str, str]]) -> list[str]:
    """Every recording file the events name, once each, in the order they name them."""
    found: dict[str, None] = {}
    for event in events:
        name = event.get("Event")
        if name == "VarSet" and event.get("Variable") in RECORDING_VARIABLES:
            found.setdefault(event.get("Value", ""), None)
        elif name == "Cdr" and event.get("Recording"):
            found.setdefault(event["Recording"], None)
    return [path for path in found if path]


def write_recordings(root: RecordingsRoot, events: Iterable[Mapping[str, str]], audio: Path) -> int:
    """Copy ``audio`` to every file the events name inside ``root``; how many were written (a
    path outside the folder is refused and logged, as the call log would refuse it)."""
    written = 0
    for reported in reported_recordings(events):
        relative = root.relative(reported)
        target = root.file(relative) if relative is not None else None
        if target is None:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(audio, target)
        written += 1
    return written
