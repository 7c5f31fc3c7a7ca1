"""Retention: recordings older than ``recording_retention_days`` are deleted from disk, and
transcripts older than ``transcript_retention_days`` from the database (each setting on its
own; unset means kept for ever). Age is counted from the end of the call.

The call keeps that a recording existed: the ``recordings`` row stays, with a
``recording_deletions`` row saying when the file went; the call page says so, and the audio
route answers 404. Only files inside the recordings folder are ever removed (realpath check),
whatever a path in the database says. A file already gone counts as deleted.

Run by ``callbridge retention run`` and from the service's lifespan every hour
(crm_bridge/supervision/periodic.py). Safe to run twice at once: a recording is claimed by inserting
its ``recording_deletions`` row (the primary key) before its files are removed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.db.models import Call, Recording, RecordingDeletion, TranscriptSegment
from crm_bridge.supervision.settings import get_setting

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True)
class RetentionReport:
    recordings_deleted: int = 0
    files_removed: int = 0
    segments_deleted: int = 0


def expired_recordings(session: Session, cutoff: datetime, limit: int) -> list[Recording]:
    """Recordings of calls that ended before ``cutoff`` whose files are still kept."""
    statement = (
        select(Recording)
        .join(Call, Call.id == Recording.call_id)
        .outerjoin(RecordingDeletion, RecordingDeletion.recording_id == Recording.id)
        .where(
            RecordingDeletion.recording_id.is_(None),
            func.coalesce(Call.ended_at, Recording.created_at) < cutoff,
        )
        .order_by(Recording.id)
        .limit(limit)
    )
    return list(session.scalars(statement))


def remove_inside(root: Path, relative: str | None) -> bool:
    """Delete ``root/relative`` when it is a file inside ``root``; True when one was removed."""
    if not relative:
        return False
    recordings = RecordingsRoot(root)
    if recordings.file(relative) is None:
        log.warning("retention: refused a recording path outside the recordings folder")
        return False
    path = recordings.existing_file(relative)
    if path is None:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _delete_recordings(
    sessions: sessionmaker[Session], root: Path, cutoff: datetime
) -> tuple[int, int]:
    deleted = removed = 0
    while True:
        with sessions() as session:
            batch = expired_recordings(session, cutoff, BATCH)
            paths = {r.id: (r.path, r.agent_path, r.customer_path) for r in batch}
        if not paths:
            return deleted, removed
        for recording_id, files in paths.items():
            try:
                with sessions.begin() as session:
                    session.add(RecordingDeletion(recording_id=recording_id, reason="retention"))
                    session.flush()
                    removed += sum(remove_inside(root, name) for name in set(files))
            except IntegrityError:
                continue  # another run claimed it
            deleted += 1


def _delete_segments(sessions: sessionmaker[Session], cutoff: datetime) -> int:
    old_calls = select(Call.id).where(_call_end() < cutoff)
    with sessions.begin() as session:
        result = session.execute(
            delete(TranscriptSegment).where(TranscriptSegment.call_id.in_(old_calls))
        )
        return int(result.rowcount or 0)


def _call_end() -> object:
    return func.coalesce(Call.ended_at, Call.offered_at, Call.created_at)


def run_retention(
    sessions: sessionmaker[Session], recordings_dir: Path, now: datetime | None = None
) -> RetentionReport:
    now = now or datetime.now(UTC)
    with sessions() as session:
        recording_days = get_setting(session, "recording_retention_days")
        transcript_days = get_setting(session, "transcript_retention_days")
    deleted = removed = segments = 0
    if recording_days is not None:
        deleted, removed = _delete_recordings(
            sessions, recordings_dir, now - timedelta(days=recording_days)
        )
    if transcript_days is not None:
        segments = _delete_segments(sessions, now - timedelta(days=transcript_days))
    report = RetentionReport(deleted, removed, segments)
    if deleted or segments:
        log.info(
            "retention: %d recordings (%d files) and %d transcript segments deleted",
            deleted, removed, segments,
        )  # fmt: skip
    return report
