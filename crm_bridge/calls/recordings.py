"""A call's recording: found inside the recordings root only, measured, linked to the call.

Asterisk names the mixed file of a call in the ``CC_RECFILE`` VarSet (and the Cdr header
``Recording``); the call tracker puts it on the call as ``recording_path``. That text comes
from outside, so it is confined here before anything touches the disk: it must name a file
inside the folder Asterisk records to (the ``pbx_recordings_dir`` setting, as the dialplan
sets ``CC_RECDIR``) or inside the bridge's own recordings root; it is then looked up under that root
(``resolve()``, symlinks followed) and refused unless it is still inside. A refused path is
logged with its digits masked and control characters escaped, and never opened.

``dialplans/extensions_callbridge.conf`` records three files together: ``<uniqueid>.wav``
(both sides), ``<uniqueid>-in.wav`` (the customer) and ``<uniqueid>-out.wav`` (the agent or the
greeting), named as in :mod:`transcription.recording_files`. The two sides are linked when
they are there, so each can be transcribed alone.
"""

from __future__ import annotations

import functools
import logging
import wave
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import Insert, Select, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_bridge.db.dialect import database_now, dialect_insert
from crm_bridge.db.models import Recording, TranscriptionJob
from crm_bridge.settings import ASTERISK_MONITOR_DIR
from telephony.masking import mask_number
from transcription.recording_files import SIDE_SUFFIXES

log = logging.getLogger(__name__)

WAV_HEADER_BYTES = 44
"""A WAV file of this size or less holds no audio (MixMonitor leaves one for a call that was
never bridged)."""
MAX_PATH_CHARS = 512
MAX_NAME_BYTES = 255
"""The longest file or folder name Linux file systems take (``NAME_MAX``)."""


@dataclass(frozen=True)
class FileCheck:
    """What was found on disk: ``status`` is one of ``RECORDING_STATUSES``."""

    status: str
    size_bytes: int | None = None
    duration_seconds: float | None = None


def for_log(text: str) -> str:
    """A value from outside made safe for a log line: escaped, shortened, digits masked."""
    return mask_number(repr(text[:200]))


class RecordingsRoot:
    """The recordings folder, and the one way in from a path Asterisk reported."""

    def __init__(self, root: Path, pbx_dir: PurePosixPath = ASTERISK_MONITOR_DIR) -> None:
        """``pbx_dir``: the folder Asterisk records to (the ``pbx_recordings_dir`` setting),
        mapped onto ``root``."""
        self.root = Path(root).resolve()
        self._bases = (pbx_dir, PurePosixPath(Path(root).absolute()), PurePosixPath(self.root))
        """The folders a reported absolute path may start with: Asterisk's, and the root as
        configured and as resolved (they differ when it is a symbolic link)."""

    def relative(self, reported: str) -> str | None:
        """The recordings-root-relative path of a file Asterisk reported, or None (refused)."""
        relative = self._relative_name(reported)
        if relative is None or self.file(relative) is None:
            log.warning(
                "recording path refused (outside the recordings folder): %s", for_log(reported)
            )
            return None
        return relative

    def file(self, relative: str) -> Path | None:
        """The file for a stored relative path, or None when it would lead outside the root
        (or cannot be followed at all: a symbolic link loop, a name the system refuses)."""
        try:
            candidate = (self.root / relative).resolve()
        except (OSError, RuntimeError, ValueError):  # RuntimeError: a symlink loop (3.11)
            return None
        if candidate == self.root or not candidate.is_relative_to(self.root):
            return None
        return candidate

    def existing_file(self, relative: str) -> Path | None:
        """:meth:`file`, when a regular file is there."""
        found = self.file(relative)
        return found if found is not None and _is_file(found) else None

    def _relative_name(self, reported: str) -> str | None:
        if not reported or len(reported) > MAX_PATH_CHARS or not reported.isprintable():
            return None
        path = PurePosixPath(reported)
        if ".." in path.parts or any(len(part.encode()) > MAX_NAME_BYTES for part in path.parts):
            return None
        if not path.is_absolute():
            return path.as_posix()
        for base in self._bases:
            if path.is_relative_to(base) and path != base:
                return path.relative_to(base).as_posix()
        return None

    def side(self, relative: str, suffix: str) -> str | None:
        """``<name><suffix>.wav`` beside the mixed file, when it exists inside the root."""
        mixed = PurePosixPath(relative)
        sibling = mixed.with_name(f"{mixed.stem}{suffix}{mixed.suffix}").as_posix()
        return sibling if self.existing_file(sibling) is not None else None


def _is_file(path: Path) -> bool:
    """``Path.is_file`` without its exceptions (a name too long for the system raises)."""
    try:
        return path.is_file()
    except OSError:
        return False


def check_file(path: Path | None) -> FileCheck:
    """Measure a WAV file: missing, empty (a header and no audio), unreadable, or ok.

    Never raises: whatever is wrong with the file (a header that lies, no permission to
    read it) is a status, so the call it belongs to is still logged."""
    if path is None or not _is_file(path):
        return FileCheck("missing")
    try:
        size = path.stat().st_size
    except OSError:
        return FileCheck("missing")
    if size <= WAV_HEADER_BYTES:
        return FileCheck("empty", size_bytes=size, duration_seconds=0.0)
    try:
        with wave.open(str(path), "rb") as wav:
            frames, rate = wav.getnframes(), wav.getframerate()
    except (wave.Error, EOFError, OSError, RuntimeError) as exc:
        # RuntimeError: the wave module's answer to a chunk size that points past the end
        log.warning("recording %s unreadable: %s", path.name, exc or type(exc).__name__)
        return FileCheck("unreadable", size_bytes=size)
    if frames == 0 or rate <= 0:
        return FileCheck("empty", size_bytes=size, duration_seconds=0.0)
    return FileCheck("ok", size_bytes=size, duration_seconds=round(frames / rate, 3))


def link_recording(
    session: Session, call_id: int, reported: str, root: RecordingsRoot
) -> int | None:
    """Link the recording Asterisk reported to the call, in the caller's transaction, and
    queue its transcription when it holds audio; its id. Once per (call, file): a call written
    again changes nothing. None when the path is refused."""
    relative = root.relative(reported)
    if relative is None:
        return None
    checked = check_file(root.file(relative))
    values = {
        "call_id": call_id,
        "path": relative,
        "status": checked.status,
        "size_bytes": checked.size_bytes,
        "duration_seconds": checked.duration_seconds,
        "agent_path": root.side(relative, SIDE_SUFFIXES["agent"]),
        "customer_path": root.side(relative, SIDE_SUFFIXES["customer"]),
    }
    connection = session.connection()
    inserted = connection.scalar(_insert_recording(connection.dialect.name), values)
    recording_id = inserted or connection.scalar(
        _recording_id(), {"of_call": call_id, "file": relative}
    )
    if inserted is not None and checked.status == "ok":
        queue_job(session, recording_id)
    log.info("call %d recording %d: %s", call_id, recording_id, checked.status)
    return recording_id


@functools.cache
def _insert_recording(dialect: str) -> Insert:
    """Built once (see ``crm_bridge/calls/call_log.py`` on why): the insert of a recording,
    returning its id, or nothing when the call has that file already."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Recording).on_conflict_do_nothing(index_elements=["call_id", "path"])
    return statement.returning(Recording.id)


@functools.cache
def _recording_id() -> Select:
    return select(Recording.id).where(
        Recording.call_id == bindparam("of_call"), Recording.path == bindparam("file")
    )


def queue_job(session: Session, recording_id: int) -> None:
    """Put a checked recording on the transcription queue (once: a recording has at most one
    job). The queue's row is how the calls side announces a recording with audio: the speech
    workers (:mod:`crm_bridge.speech.jobs`) claim from it, in the same transaction as the
    recording row, so neither exists without the other."""
    statement = dialect_insert(session)(TranscriptionJob).values(
        recording_id=recording_id, status="queued", attempts=0, not_before=database_now(session)
    )
    session.execute(statement.on_conflict_do_nothing(index_elements=["recording_id"]))
