"""Recognition with Vosk: one shared model per folder, one recogniser per speaker.

How audio is fed: at the rate it was recorded. Telephone recordings (8 kHz) go to Vosk as
they are and Kaldi's feature pipeline resamples them to the model's rate itself
(``--allow-upsample=true`` in the models' ``conf/mfcc.conf``). Resampling to 16 kHz first
with a high-quality resampler measured worse on real 8 kHz speech: ``bench/asr_rate.py``
prints both figures.

Each side of a call gets its own recogniser (``KaldiRecognizer`` is mono only), so a word is
always labelled with the speaker who said it; the segments of both sides are merged in time
order. Which file or channel is which side: :mod:`transcription.recording_files`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import vosk

from transcription.errors import AudioError, ModelError
from transcription.model_files import check_model
from transcription.recording_files import STEREO_SPEAKERS
from transcription.transcript import Segment, Transcript, Word

BLOCK_FRAMES = 4000
"""Frames fed to the recogniser at a time (half a second at 8 kHz)."""
SAMPLE_RATES = range(4000, 192_001)
"""Sample rates accepted, in Hz. Vosk resamples whatever it is fed to the model's rate, so a
header claiming 1 Hz turns a 16 kB file into hours of audio to decode: refused as corrupt."""
UNSPACED_LANGUAGES = frozenset({"zh", "ja"})
"""Languages written without spaces between words: their words are joined without one."""

_models: dict[Path, vosk.Model] = {}
_models_lock = threading.Lock()


def load_model(model_dir: Path) -> vosk.Model:
    """The Vosk model in ``model_dir``, loaded once per process and shared by every caller.

    Thread-safe; a vosk ``Model`` may be used by recognisers in many threads at once.
    Raises :class:`ModelError` when the folder is missing or Vosk cannot load it.
    """
    key = Path(model_dir).resolve()
    with _models_lock:
        model = _models.get(key)
        if model is None:
            check_model(key)
            vosk.SetLogLevel(-1)  # Kaldi logs every load and decode to stderr otherwise
            try:
                model = vosk.Model(str(key))
            except Exception as exc:  # vosk raises a bare Exception when loading fails
                raise ModelError(f"Vosk could not load the model in {key}: {exc}") from exc
            _models[key] = model
        return model


@dataclass
class _Track:
    """One open audio file and the speaker of each of its channels."""

    audio: soundfile.SoundFile
    speakers: tuple[str, ...]


def _open(path: Path, stack: ExitStack) -> soundfile.SoundFile:
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        audio = stack.enter_context(soundfile.SoundFile(path))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise AudioError(f"{path}: not readable audio ({exc})") from exc
    if audio.samplerate not in SAMPLE_RATES:
        raise AudioError(
            f"{path}: sample rate {audio.samplerate} Hz; expected "
            f"{SAMPLE_RATES.start}-{SAMPLE_RATES.stop - 1} Hz"
        )
    return audio


def _tracks(sides: Mapping[str, Path] | Path, stack: ExitStack) -> list[_Track]:
    if isinstance(sides, Path | str):
        audio = _open(Path(sides), stack)
        if audio.channels == 1:
            return [_Track(audio, ("mixed",))]
        if audio.channels == 2:
            return [_Track(audio, STEREO_SPEAKERS)]
        raise AudioError(f"{sides}: {audio.channels} channels; expected mono or stereo")
    tracks = []
    for speaker, path in sides.items():
        if speaker not in ("agent", "customer"):
            raise ValueError(f"unknown side {speaker!r}: expected 'agent' or 'customer'")
        audio = _open(Path(path), stack)
        if audio.channels != 1:
            raise AudioError(f"{path}: {audio.channels} channels; one side must be mono")
        tracks.append(_Track(audio, (speaker,)))
    return tracks


def _blocks(audio: soundfile.SoundFile) -> Iterator[np.ndarray]:
    """The audio in blocks of ``BLOCK_FRAMES`` frames, 16-bit, one column per channel.

    A read loop rather than ``SoundFile.blocks``, which refuses files libsndfile cannot seek
    in (GSM 6.10 WAVs among them)."""
    while True:
        try:
            block = audio.read(BLOCK_FRAMES, dtype="int16", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, ValueError) as exc:
            raise AudioError(f"{audio.name}: unreadable audio data ({exc})") from exc
        if not len(block):
            return
        yield block


def join_words(words: tuple[Word, ...], language: str) -> str:
    """The words as text: with spaces, or none between words of an unspaced language (Latin
    words side by side still get one)."""
    if language not in UNSPACED_LANGUAGES:
        return " ".join(word.text for word in words)
    text = ""
    for word in words:
        if text[-1:].isascii() and text[-1:].isalnum() and word.text[:1].isascii():
            text += " "
        text += word.text
    return text


class Transcriber:
    """Transcribes recordings with the Vosk model in ``model_dir``."""

    def __init__(self, model_dir: Path, *, language: str = "zh") -> None:
        self.model_dir = Path(model_dir)
        self.language = language
        self._model = load_model(self.model_dir)

    def transcribe(
        self,
        sides: Mapping[str, Path] | Path,
        progress: Callable[[float], None] | None = None,
    ) -> Transcript:
        """Transcribe one file (mono: speaker ``mixed``; stereo: left ``customer``, right
        ``agent``) or one file per side (``{"agent": path, "customer": path}``).

        ``progress`` is called with the share of audio read so far, 0.0 to 1.0. Silent or
        empty audio gives a transcript without segments; a file that is not audio raises
        :class:`AudioError`.
        """
        segments: list[Segment] = []
        with ExitStack() as stack:
            tracks = _tracks(sides, stack)
            total = sum(track.audio.frames for track in tracks)
            done = 0
            for track in tracks:
                for frames in self._decode(track, segments):
                    done += frames
                    if progress and total:
                        progress(min(done / total, 1.0))
            duration = max(
                (track.audio.frames / track.audio.samplerate for track in tracks), default=0.0
            )
        if progress:
            progress(1.0)
        segments.sort(key=lambda segment: (segment.start, segment.end, segment.speaker))
        return Transcript(tuple(segments), round(duration, 3), self.language)

    def _decode(self, track: _Track, segments: list[Segment]) -> Iterator[int]:
        """Feed every channel of ``track`` to its own recogniser, appending finished segments;
        yields the frames read after each block."""
        recognisers = []
        for _ in track.speakers:
            recogniser = vosk.KaldiRecognizer(self._model, float(track.audio.samplerate))
            recogniser.SetWords(True)
            recognisers.append(recogniser)
        for block in _blocks(track.audio):
            for channel, (speaker, recogniser) in enumerate(
                zip(track.speakers, recognisers, strict=True)
            ):
                samples = np.ascontiguousarray(block[:, channel]).tobytes()
                if recogniser.AcceptWaveform(samples):
                    self._collect(recogniser.Result(), speaker, segments)
            yield len(block)
        for speaker, recogniser in zip(track.speakers, recognisers, strict=True):
            self._collect(recogniser.FinalResult(), speaker, segments)

    def _collect(self, result: str, speaker: str, segments: list[Segment]) -> None:
        """Turn one Vosk result into a segment; an empty result (silence) makes none."""
        words = tuple(
            Word(
                text=item["word"],
                start=float(item["start"]),
                end=float(item["end"]),
                confidence=float(item["conf"]),
            )
            for item in json.loads(result).get("result", ())
        )
        if words:
            segments.append(
                Segment(
                    speaker, words[0].start, words[-1].end, join_words(words, self.language), words
                )
            )
