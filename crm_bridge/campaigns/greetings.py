"""Campaign greetings: an upload turned into what Asterisk plays, and its length.

Asterisk's ``wav`` format is 8 kHz mono 16-bit PCM and nothing else: a 16 kHz file is refused
at playback (``Unexpected frequency mismatch 16000 (expecting 8000)``) and the customer hears
silence. So every upload is decoded with soundfile (libsndfile: WAV of any width, µ-law,
A-law, float, FLAC, Ogg, MP3 ...), mixed down to one channel, resampled to 8 kHz with soxr
and written as 16-bit PCM WAV. What cannot be decoded is refused with a message the
scheduler can act on; the file is stored under a generated name only once it converts.
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

PBX_RATE = 8000
"""What the dialplan's ``Playback`` plays: 8 kHz mono 16-bit PCM WAV."""
MAX_GREETING_BYTES = 10 * 1024 * 1024
MAX_GREETING_SECONDS = 300.0
"""A greeting is a few sentences; anything past five minutes is a wrong file."""

NOT_AUDIO = (
    "无法识别的录音文件，请上传 WAV/MP3/FLAC/OGG / "
    "Not an audio file we can read: upload WAV, MP3, FLAC or OGG"
)
TOO_BIG = "录音文件超过 10 MB / The greeting is over 10 MB"
SILENT = "录音文件没有声音内容 / The greeting holds no audio"
TOO_LONG = "录音超过 5 分钟 / The greeting is longer than 5 minutes"


class GreetingRefused(ValueError):
    """An upload that cannot be a greeting; the message is zh-CN / English."""


@dataclass(frozen=True)
class Greeting:
    wav: bytes
    """8 kHz mono 16-bit PCM WAV."""
    seconds: float


def convert(data: bytes) -> Greeting:
    """The upload as Asterisk plays it. Raises :class:`GreetingRefused`."""
    if len(data) > MAX_GREETING_BYTES:
        raise GreetingRefused(TOO_BIG)
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError):
        raise GreetingRefused(NOT_AUDIO) from None
    if samples.shape[0] == 0 or not np.isfinite(samples).all():
        raise GreetingRefused(SILENT if samples.shape[0] == 0 else NOT_AUDIO)
    if samples.shape[0] / rate > MAX_GREETING_SECONDS:
        raise GreetingRefused(TOO_LONG)
    mono = samples.mean(axis=1)
    if rate != PBX_RATE:
        mono = soxr.resample(mono, rate, PBX_RATE, quality="HQ")
    out = io.BytesIO()
    soundfile.write(out, np.clip(mono, -1.0, 1.0), PBX_RATE, subtype="PCM_16", format="WAV")
    return Greeting(out.getvalue(), len(mono) / PBX_RATE)


def store(data: bytes, folder: Path) -> str:
    """Convert the upload and keep it in ``folder`` under a generated name; the name."""
    greeting = convert(data)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.wav"
    (folder / name).write_bytes(greeting.wav)
    return name


STORED_NAME = re.compile(r"[0-9a-f]{32}\.wav")
"""The names :func:`store` gives: nothing else is ever taken for a stored greeting."""


def already_stored(folder: Path, name: object) -> str | None:
    """``name`` when it names a greeting :func:`store` kept in ``folder`` (a form refused for
    another field carries it, so the user need not upload it again), else None."""
    if isinstance(name, str) and STORED_NAME.fullmatch(name) and (folder / name).is_file():
        return name
    return None


def stored_path(folder: Path, name: str | None) -> Path | None:
    """The file of a greeting :func:`store` kept in ``folder``; None for any other name (a
    path, a name it never gives) or when the file is gone. Nothing outside ``folder`` is ever
    returned, whatever the name."""
    if not isinstance(name, str) or not STORED_NAME.fullmatch(name):
        return None
    base = folder.resolve()
    path = (base / name).resolve()
    if path.parent != base or not path.is_file():
        return None
    return path


def seconds_of(folder: Path, name: str | None) -> float | None:
    """The length of a stored greeting (None: none, or its file is gone)."""
    if not name:
        return None
    path = folder / Path(name).name  # a stored name never holds a folder
    try:
        info = soundfile.info(str(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError):
        return None
    return info.frames / info.samplerate
