"""Broken audio through the whole recording path: measured by ``crm_bridge/calls/recordings.py``
without raising, transcribed by the real Vosk engine (the Korean test model, see
tests/speech_fixtures.py) into a transcript or an :class:`AudioError`, and failed at once and
for good by the transcription worker, which goes on with the next job.

Files: empty, a bare 44-byte header, truncated, text or MP3 bytes named ``.wav``, headers that
lie (sample rate 0, 1 Hz or 4 GHz, no channels, a chunk size past the end of the file), a huge
header, long silence, and random bytes from Hypothesis.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from speech_fixtures import ASR_SAMPLES, dither_free_model
from sqlalchemy import select

from crm_bridge.calls.recordings import FileCheck, RecordingsRoot, check_file, link_recording
from crm_bridge.db.models import Call, Recording, TranscriptionJob, TranscriptSegment
from crm_bridge.speech.jobs import RetryPolicy, Worker, queue_job
from transcription.engine import Transcriber
from transcription.errors import AudioError
from transcription.transcript import Transcript

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SPEECH = ASR_SAMPLES / "ko" / "zeroth_0004.8k.wav"
PBX_DIR = "/var/spool/asterisk/monitor"
STATUSES = {"ok", "empty", "unreadable", "missing"}


def wav(
    data: bytes = b"",
    *,
    rate: int = 8000,
    channels: int = 1,
    bits: int = 16,
    fmt: int = 1,
    before_data: bytes = b"",
    data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file written by hand, so that every field may lie."""
    block = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, (rate * block) % 2**32, block, bits)
    size = len(data) if data_size is None else data_size
    body = (b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + before_data
            + b"data" + struct.pack("<I", size) + data)  # fmt: skip
    return b"RIFF" + struct.pack("<I", len(body)) + body


def silence_wav(seconds: float, rate: int = 8000) -> bytes:
    return wav(b"\x00\x00" * int(rate * seconds), rate=rate)


ONE_SECOND = b"\x01\x00" * 8000
CASES = {
    # name: (bytes, what check_file says, transcribed: "audio" (a transcript) or "error")
    "zero-bytes": (b"", "empty", "error"),
    "header-only": (wav(), "empty", "audio"),
    "text": (b"this is not audio, just text\n" * 40, "unreadable", "error"),
    "mp3-named-wav": (
        b"ID3\x03\x00\x00\x00\x00\x00\x00\xff\xfb\x90\x64" + bytes(range(256)) * 8,
        "unreadable",
        "error",
    ),  # fmt: skip
    "truncated": (wav(ONE_SECOND[:1600], data_size=10**6), "ok", "audio"),
    "rate-0": (wav(ONE_SECOND, rate=0), "empty", "error"),
    "rate-1hz": (wav(ONE_SECOND[:200], rate=1), "ok", "error"),  # 1 Hz: decoding it never ended
    "rate-4ghz": (wav(ONE_SECOND, rate=4_000_000_000), "ok", "error"),
    "no-channels": (wav(ONE_SECOND, channels=0), "unreadable", "error"),
    "eight-channels": (wav(ONE_SECOND, channels=8), "ok", "error"),
    "zero-bit-samples": (wav(ONE_SECOND, bits=0), "unreadable", "error"),
    "huge-header": (
        wav(ONE_SECOND, before_data=b"LIST" + struct.pack("<I", 8 << 20) + bytes(8 << 20)),
        "ok",
        "audio",
    ),  # fmt: skip
    "chunk-past-the-end": (
        wav(before_data=b"LIST" + struct.pack("<I", 0xFFFFFFF0)),
        "unreadable",
        "error",
    ),  # fmt: skip
    "float-nan": (
        wav(struct.pack("<f", float("nan")) * 8000, fmt=3, bits=32),
        "unreadable",
        "audio",
    ),  # fmt: skip
}


@pytest.fixture(scope="module")
def transcriber(tmp_path_factory) -> Transcriber:
    return Transcriber(dither_free_model(tmp_path_factory.getbasetemp()), language="ko")


@pytest.fixture(scope="module")
def broken_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("broken")
    files = {}
    for name, (content, _, _) in CASES.items():
        files[name] = folder / f"{name}.wav"
        files[name].write_bytes(content)
    return files


@pytest.mark.parametrize("name", CASES)
def test_a_broken_file_is_measured_without_raising(broken_files, name):
    """A chunk size past the end made the wave module raise RuntimeError here, which failed
    the call log's transaction (the call was lost)."""
    assert check_file(broken_files[name]).status == CASES[name][1]


@pytest.mark.parametrize("name", CASES)
def test_a_broken_file_gives_a_transcript_or_an_audio_error(transcriber, broken_files, name):
    expected = CASES[name][2]
    if expected == "error":
        with pytest.raises(AudioError) as refused:
            transcriber.transcribe(broken_files[name])
        assert broken_files[name].name in str(refused.value)
        return
    transcript = transcriber.transcribe(broken_files[name])
    assert isinstance(transcript, Transcript)
    assert transcript.duration_seconds >= 0


def test_a_broken_side_fails_the_whole_two_sided_call(transcriber, broken_files, tmp_path):
    speech = tmp_path / "out.wav"
    speech.write_bytes(SPEECH.read_bytes())
    for name in ("text", "rate-1hz", "eight-channels", "zero-bytes"):
        with pytest.raises(AudioError):
            transcriber.transcribe({"agent": speech, "customer": broken_files[name]})


def test_long_silence_is_an_empty_transcript(transcriber, tmp_path):
    path = tmp_path / "silence.wav"
    path.write_bytes(silence_wav(60))
    assert check_file(path) == FileCheck("ok", 44 + 2 * 8000 * 60, 60.0)
    transcript = transcriber.transcribe(path)
    assert (transcript.segments, transcript.duration_seconds) == ((), 60.0)


@FUZZ
@given(
    header=st.sampled_from([b"", wav()[:44], wav(rate=1)[:44], b"RIFF\xff\xff\xff\xffWAVE"]),
    junk=st.binary(max_size=4000),
)
def test_random_bytes_are_a_transcript_or_an_audio_error(transcriber, tmp_path, header, junk):
    path = tmp_path / "random.wav"
    path.write_bytes(header + junk)
    assert check_file(path).status in STATUSES
    try:
        transcript = transcriber.transcribe(path)
    except AudioError:
        return
    assert transcript.duration_seconds >= 0


# --------------------------------------------------------------------------- the worker


@pytest.fixture
def root(tmp_path) -> RecordingsRoot:
    folder = tmp_path / "recordings"
    folder.mkdir()
    return RecordingsRoot(folder)


def queued(sessions, root: RecordingsRoot, name: str, content: bytes) -> int:
    """A call whose recording holds ``content``, with its transcription queued: linked by the
    call log when it measures as audio, else as a file replaced after it was measured."""
    (root.root / f"{name}.wav").write_bytes(content)
    with sessions.begin() as session:
        call = Call(linkedid=name, server="pbx")
        session.add(call)
        session.flush()
        recording = session.get(
            Recording, link_recording(session, call.id, f"{PBX_DIR}/{name}.wav", root)
        )
        if recording.status != "ok":
            recording.status = "ok"
            queue_job(session, recording.id)
        return recording.id


def test_the_worker_fails_each_broken_file_at_once_and_goes_on(
    sqlite_sessions, root, transcriber, broken_files
):
    good = queued(sqlite_sessions, root, "speech", SPEECH.read_bytes())
    broken = {
        name: queued(sqlite_sessions, root, name, content)
        for name, (content, _, kind) in CASES.items()
        if kind == "error"
    }
    silent = queued(sqlite_sessions, root, "silent", silence_wav(3))
    worker = Worker(
        sqlite_sessions,
        root,
        transcriber.transcribe,
        retry=RetryPolicy(max_attempts=3, base_delay_seconds=0.1, max_delay_seconds=0.1),
    )
    assert worker.run(once=True) == len(broken) + 2
    with sqlite_sessions() as session:
        jobs = {j.recording_id: j for j in session.scalars(select(TranscriptionJob))}
        segments = session.scalars(select(TranscriptSegment.recording_id)).all()
    for name, recording_id in broken.items():
        job = jobs[recording_id]
        assert (job.status, job.attempts) == ("failed", 1), name
        assert job.error.startswith("AudioError: ") and f"{name}.wav" in job.error
    assert (jobs[silent].status, jobs[silent].error) == (
        "failed",
        "AudioError: no speech recognised (a silent recording)",
    )
    assert jobs[good].status == "done" and set(segments) == {good}
    assert worker.run(once=True) == 0  # failed for good: never taken again


def test_a_job_whose_file_turns_to_text_fails_and_the_recording_stays(
    sqlite_sessions, root, transcriber
):
    recording_id = queued(sqlite_sessions, root, "later-broken", SPEECH.read_bytes())
    (root.root / "later-broken.wav").write_text("overwritten with text", encoding="utf-8")
    Worker(sqlite_sessions, root, transcriber.transcribe).run(once=True)
    with sqlite_sessions() as session:
        job = session.scalars(select(TranscriptionJob)).one()
        assert (job.status, job.attempts) == ("failed", 1)
        assert session.get(Recording, recording_id).path == "later-broken.wav"


def test_writing_helpers_make_what_they_claim(tmp_path):
    """The hand-made header agrees with the wave module on a file that does not lie."""
    path = tmp_path / "plain.wav"
    path.write_bytes(silence_wav(0.5))
    with wave.open(str(path), "rb") as plain:
        assert (plain.getnchannels(), plain.getframerate(), plain.getnframes()) == (1, 8000, 4000)
