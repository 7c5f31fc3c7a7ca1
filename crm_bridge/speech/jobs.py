"""The transcription queue: jobs in the database, claimed by worker processes under a lease.

Any number of workers (``callbridge worker``, on any machine that shares the database and the
recordings folder) take jobs from one table. A claim is one statement per backend:

- PostgreSQL: ``UPDATE … WHERE id = (SELECT id … FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING``;
  concurrent claims skip each other's rows instead of waiting or taking the same one.
- SQLite: the same ``UPDATE … WHERE id = (SELECT …) RETURNING`` (SQLite 3.35+). A writing
  statement takes the database's write lock before it reads, so two claims run one after
  the other and the second no longer sees the first one's job as due.

A claimed job carries a lease that a thread renews while the worker works. A worker that dies
leaves its job ``running`` with a lease that runs out; the next claim takes it again. Each
claim counts as an attempt. An :class:`~transcription.errors.AudioError` (corrupt or
unsupported audio) fails the job at once with its reason; any other error puts it back with
exponential back-off until ``max_attempts``, then fails it. Finishing replaces the recording's
transcript (delete and insert in one transaction), and only while the job is still this
worker's: a worker whose lease was taken over writes nothing.

Times come from the database on PostgreSQL (workers on several machines share its clock) and
from this machine on SQLite (one machine).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.calls.recordings import queue_job
from crm_bridge.db.dialect import database_now
from crm_bridge.db.models import Recording, TranscriptionJob, TranscriptSegment
from transcription.errors import AudioError
from transcription.transcript import Transcript

if TYPE_CHECKING:
    from crm_bridge.calls.recordings import RecordingsRoot

log = logging.getLogger(__name__)

AudioSource = Path | Mapping[str, Path]
"""What the engine transcribes: one file (both sides mixed) or ``{"agent": …, "customer": …}``."""
Transcribe = Callable[[AudioSource], Transcript]
MAX_ERROR_CHARS = 500
WORKER_NICENESS = 10
"""How much a worker lowers its own CPU priority: on a machine that also runs the bridge, a
decode must not delay a screen pop (``bench/pop_latency.py`` measures pops beside a busy core)."""


class RecordingUnavailable(Exception):
    """The recording's file is not there now (a share not mounted, a file not yet written):
    worth trying again later, unlike an AudioError."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how soon a job that met a passing error is tried again."""

    max_attempts: int = 5
    base_delay_seconds: float = 30.0
    max_delay_seconds: float = 3600.0

    def delay(self, attempts: int) -> timedelta:
        """The wait after the ``attempts``-th failed try: base, 2×base, 4×base … up to max."""
        seconds = self.base_delay_seconds * 2 ** max(0, attempts - 1)
        return timedelta(seconds=min(seconds, self.max_delay_seconds))


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    recording_id: int
    attempts: int


def rerun_job(session: Session, recording_id: int) -> None:
    """Queue a recording again, from its first attempt; its transcript is replaced when done.

    A job some worker is running now is left to finish."""
    queue_job(session, recording_id)
    session.execute(
        update(TranscriptionJob)
        .where(TranscriptionJob.recording_id == recording_id, TranscriptionJob.status != "running")
        .values(
            status="queued",
            attempts=0,
            not_before=database_now(session),
            error=None,
            worker=None,
            lease_expires_at=None,
            finished_at=None,
            updated_at=database_now(session),
        )
    )


def claim_job(session: Session, worker: str, lease_seconds: float) -> ClaimedJob | None:
    """Take the oldest due job for ``worker`` (queued and due, or running with its lease
    expired), or None. Commit the session to make the claim visible."""
    now = database_now(session)
    jobs = TranscriptionJob
    due = (
        select(jobs.id)
        .where(
            or_(
                and_(jobs.status == "queued", jobs.not_before <= now),
                and_(jobs.status == "running", jobs.lease_expires_at < now),
            )
        )
        .order_by(jobs.not_before, jobs.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claim = (
        update(jobs)
        .where(jobs.id == due.scalar_subquery())
        .values(
            status="running",
            attempts=jobs.attempts + 1,
            worker=worker,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            updated_at=now,
        )
        .returning(jobs.id, jobs.recording_id, jobs.attempts)
    )
    row = session.execute(claim).one_or_none()
    return None if row is None else ClaimedJob(*row)


def _ours(job_id: int, worker: str) -> Any:
    jobs = TranscriptionJob
    return and_(jobs.id == job_id, jobs.worker == worker, jobs.status == "running")


def renew_lease(session: Session, job_id: int, worker: str, lease_seconds: float) -> bool:
    """Push the lease on; False when the job is no longer this worker's."""
    now = database_now(session)
    result = session.execute(
        update(TranscriptionJob)
        .where(_ours(job_id, worker))
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds), updated_at=now)
    )
    return result.rowcount == 1


def finish_job(session: Session, job: ClaimedJob, worker: str, transcript: Transcript) -> bool:
    """Mark the job done and replace the recording's transcript; False (nothing written) when
    the job is no longer this worker's. The caller commits."""
    now = database_now(session)
    done = session.execute(
        update(TranscriptionJob)
        .where(_ours(job.id, worker))
        .values(status="done", error=None, lease_expires_at=None, finished_at=now, updated_at=now)
    )
    if done.rowcount != 1:
        return False
    call_id = session.scalar(select(Recording.call_id).where(Recording.id == job.recording_id))
    session.execute(
        delete(TranscriptSegment).where(TranscriptSegment.recording_id == job.recording_id)
    )
    session.add_all(
        TranscriptSegment(
            recording_id=job.recording_id,
            call_id=call_id,
            speaker=segment.speaker,
            start_seconds=segment.start,
            end_seconds=segment.end,
            text=segment.text,
            words=[
                {"text": w.text, "start": w.start, "end": w.end, "confidence": w.confidence}
                for w in segment.words
            ],
        )
        for segment in transcript.segments
    )
    return True


def fail_job(
    session: Session, job: ClaimedJob, worker: str, reason: str, *, retry: RetryPolicy | None
) -> str | None:
    """Record a failed try: back to ``queued`` after a back-off while ``retry`` allows another
    attempt, else ``failed``. Returns the new status, or None when the job was not ours."""
    now = database_now(session)
    again = retry is not None and job.attempts < retry.max_attempts
    values: dict[str, Any] = {
        "error": reason[:MAX_ERROR_CHARS],
        "lease_expires_at": None,
        "updated_at": now,
    }
    if again:
        values |= {
            "status": "queued",
            "worker": None,
            "not_before": now + retry.delay(job.attempts),
        }
    else:
        values |= {"status": "failed", "finished_at": now}
    result = session.execute(update(TranscriptionJob).where(_ours(job.id, worker)).values(**values))
    return values["status"] if result.rowcount == 1 else None


def worker_name() -> str:
    """``host:pid:random``: unique per worker process, readable in the jobs table."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{secrets.token_hex(3)}"


class _LeaseKeeper:
    """Renews a job's lease every third of its length while the work goes on."""

    def __init__(
        self, sessions: sessionmaker[Session], job_id: int, worker: str, lease_seconds: float
    ) -> None:
        self._renew = lambda: self._renew_once(sessions, job_id, worker, lease_seconds)
        self._interval = lease_seconds / 3
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{job_id}", daemon=True)

    @staticmethod
    def _renew_once(
        sessions: sessionmaker[Session], job_id: int, worker: str, lease: float
    ) -> bool:
        with sessions.begin() as session:
            return renew_lease(session, job_id, worker, lease)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                if not self._renew():
                    log.warning("lease lost: another worker took the job over")
                    return
            except Exception as exc:  # a database hiccup: the next renewal may get through
                log.warning("lease renewal failed: %s", type(exc).__name__)

    def __enter__(self) -> _LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


class Worker:
    """Takes jobs one at a time and transcribes them with ``transcribe``."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        root: RecordingsRoot,
        transcribe: Transcribe,
        *,
        name: str | None = None,
        lease_seconds: float = 60.0,
        poll_seconds: float = 2.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._sessions = sessions
        self._root = root
        self._transcribe = transcribe
        self.name = name or worker_name()
        self._lease_seconds = lease_seconds
        self._poll_seconds = poll_seconds
        self._retry = retry or RetryPolicy()
        self.stopping = threading.Event()

    def run(self, *, once: bool = False) -> int:
        """Work until :attr:`stopping` is set (or, with ``once``, until no job is due);
        return how many jobs were handled. A database that is away is waited for: the job
        in hand, if any, goes back to the queue when its lease runs out."""
        handled = 0
        while not self.stopping.is_set():
            try:
                if self.run_one():
                    handled += 1
                    continue
            except OperationalError as exc:
                log.warning("database unavailable (%s); waiting", type(exc).__name__)
            if once:
                break
            self.stopping.wait(self._poll_seconds)
        return handled

    def run_one(self) -> bool:
        """Claim one due job and handle it; False when none was due."""
        with self._sessions.begin() as session:
            job = claim_job(session, self.name, self._lease_seconds)
        if job is None:
            return False
        log.info(
            "job %d (recording %d, attempt %d) started", job.id, job.recording_id, job.attempts
        )
        with _LeaseKeeper(self._sessions, job.id, self.name, self._lease_seconds):
            result = self._work(job)
        log.info("job %d: %s", job.id, self._settle(job, result))
        return True

    def _work(self, job: ClaimedJob) -> Transcript | Exception:
        """The transcript, or what went wrong (settled once the lease is no longer renewed)."""
        try:
            transcript = self._transcribe(self._source(job.recording_id))
        except Exception as exc:  # every failure is recorded on the job by _settle
            return exc
        if not transcript.segments:
            return AudioError("no speech recognised (a silent recording)")
        return transcript

    def _settle(self, job: ClaimedJob, result: Transcript | Exception) -> str:
        if isinstance(result, AudioError):
            return self._failed(job, f"AudioError: {result}", retry=None)
        if isinstance(result, Exception):
            return self._failed(job, f"{type(result).__name__}: {result}", retry=self._retry)
        with self._sessions.begin() as session:
            finished = finish_job(session, job, self.name, result)
        return "done" if finished else "lease lost, result dropped"

    def _failed(self, job: ClaimedJob, reason: str, *, retry: RetryPolicy | None) -> str:
        with self._sessions.begin() as session:
            status = fail_job(session, job, self.name, reason, retry=retry)
        return f"{status or 'lease lost'} ({reason})"

    def _source(self, recording_id: int) -> AudioSource:
        """The recording's files, confined to the root again (the folder may have changed)."""
        with self._sessions() as session:
            recording = session.get(Recording, recording_id)
        if recording is None:
            raise AudioError("the recording was deleted")
        if recording.agent_path and recording.customer_path:
            return {
                "agent": self._existing(recording.agent_path),
                "customer": self._existing(recording.customer_path),
            }
        return self._existing(recording.path)

    def _existing(self, relative: str) -> Path:
        path = self._root.file(relative)
        if path is None:
            raise AudioError("the recording's path leads outside the recordings folder")
        if not path.is_file():
            raise RecordingUnavailable(f"recording file not found: {Path(relative).name}")
        return path


def run_worker(
    database_url: str,
    recordings_dir: Path,
    model_dir: Path,
    *,
    language: str,
    once: bool,
    lease_seconds: float,
    poll_seconds: float,
    retry: RetryPolicy,
    niceness: int = WORKER_NICENESS,
) -> int:
    """``callbridge worker``: load the model (a broken one raises ModelError here, before any
    job is taken), then work until SIGTERM/SIGINT (the job in hand is finished first) or, with
    ``once``, until no job is due. Returns how many jobs were handled. The process first lowers
    its CPU priority by ``niceness``."""
    from crm_bridge.calls.recordings import RecordingsRoot
    from crm_bridge.db.engine import make_engine, make_session_factory
    from transcription.engine import Transcriber

    os.nice(niceness)
    transcriber = Transcriber(model_dir, language=language)
    engine = make_engine(database_url)
    worker = Worker(
        make_session_factory(engine),
        RecordingsRoot(recordings_dir),
        transcriber.transcribe,
        lease_seconds=lease_seconds,
        poll_seconds=poll_seconds,
        retry=retry,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stopping.set())
    log.info("worker %s ready (model %s)", worker.name, model_dir.name)
    try:
        return worker.run(once=once)
    finally:
        engine.dispose()
