"""The ended-call journal: every ended call on disk until the call log has it, so that a
service killed while the database is away loses no call.

The bridge appends each ended call to ``<journal_dir>/ended-calls.jsonl`` as one JSON line and
fsyncs the file before the database write is tried; once the call log holds the call, a
``{"done": linkedid}`` line follows. That line is not fsync'd: if a kill loses it, the call is
written again at the next start, which changes nothing (the call log's insert is idempotent by
Linkedid). Whenever no call is left open the file is emptied, and past :data:`COMPACT_AFTER`
done lines it is rewritten with the open calls only.

Every call is journaled, not only those whose first database write fails: a call whose first
attempt is cut by a kill, and every call queued behind a write that is waiting for the
database, would otherwise be lost. The fsync runs on its own thread (never on the event loop),
once for all the calls that ended in the same turn of the loop (see
``crm_bridge/calls/bridge.py``).

:meth:`CallJournal.load` reads what a previous run left: the calls without a ``done`` line, to
be written through the call log again. A line torn by a kill in the middle of a write (the last
one) is dropped unless it reads whole: its fsync never returned, so no database write of that
call had been tried. The file is then rewritten with the open calls only, so a
torn tail never glues itself to the next line. A lock on ``journal.lock`` keeps a second
process from using the same folder.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from telephony.call_events import CallRecord

log = logging.getLogger(__name__)

JOURNAL_FILE = "ended-calls.jsonl"
LOCK_FILE = "journal.lock"
COMPACT_AFTER = 1000
"""Done lines after which the file is rewritten with the open calls only (it is emptied at
once whenever no call is open, which is the usual case)."""


class JournalInUse(RuntimeError):
    """Another process holds the journal folder."""


_CALL = TypeAdapter(CallRecord)


def encode_call(call: CallRecord) -> dict[str, Any]:
    """The call as plain JSON values (enums as their string values)."""
    return _CALL.dump_python(call, mode="json")


def decode_call(data: dict[str, Any]) -> CallRecord:
    """A call from :func:`encode_call`'s output (``ValueError`` if it is not one); keys
    this version does not know are ignored."""
    return _CALL.validate_python(data)


class CallJournal:
    """One journal folder, held by this process until :meth:`close`. Thread-safe."""

    def __init__(self, folder: Path, left_open: dict[str, bytes]) -> None:
        self.folder = folder
        self._path = folder / JOURNAL_FILE
        self._lock = threading.Lock()
        self._open = dict(left_open)
        self._done_lines = 0
        self._holder = _hold(folder / LOCK_FILE)
        self._fd = -1
        self._rewrite()

    @classmethod
    def load(cls, folder: Path) -> CallJournal:
        """Open the journal in ``folder`` (made if missing), keeping what a previous run left
        open; raises :class:`JournalInUse` if another process holds it."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / JOURNAL_FILE
        raw = path.read_bytes() if path.exists() else b""
        return cls(folder, _open_entries(raw, path))

    def unconfirmed(self) -> list[CallRecord]:
        """The calls journaled and not yet confirmed in the call log, oldest first."""
        with self._lock:
            lines = list(self._open.values())
        return [decode_call(json.loads(line)["call"]) for line in lines]

    @property
    def open_count(self) -> int:
        return len(self._open)

    def append(self, calls: Sequence[CallRecord]) -> None:
        """Write the calls and fsync: when this returns they survive a kill."""
        lines = {call.linkedid: _call_line(call) for call in calls}
        with self._lock:
            _write_all(self._fd, b"".join(lines.values()))
            os.fsync(self._fd)
            self._open.update(lines)

    def done(self, linkedids: Iterable[str]) -> None:
        """The call log holds these calls: mark them (no fsync), compact when it pays."""
        with self._lock:
            finished = [lid for lid in linkedids if self._open.pop(lid, None) is not None]
            if not finished:
                return
            if not self._open:
                os.ftruncate(self._fd, 0)
                self._done_lines = 0
                return
            _write_all(self._fd, b"".join(_done_line(lid) for lid in finished))
            self._done_lines += len(finished)
            if self._done_lines >= COMPACT_AFTER:
                self._rewrite()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            os.close(self._holder)

    def _rewrite(self) -> None:
        """Replace the file with the open calls only (atomically: write, fsync, rename)."""
        spare = self._path.with_suffix(".tmp")
        fd = os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            _write_all(fd, b"".join(self._open.values()))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(spare, self._path)
        _fsync_folder(self.folder)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd = os.open(self._path, os.O_WRONLY | os.O_APPEND)
        self._done_lines = 0


def _open_entries(raw: bytes, path: Path) -> dict[str, bytes]:
    """The journaled calls without a done line, by Linkedid, in the order they were written."""
    left_open: dict[str, bytes] = {}
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, start=1):
        entry = _parse(line) if line else None
        if entry is None:
            if line:
                torn = number == len(lines)
                what = "the last line is torn (killed mid-write)" if torn else "unreadable line"
                log.warning("call journal %s: %s, line %d skipped", path, what, number)
        elif "done" in entry:
            left_open.pop(entry["done"], None)
        else:
            left_open[entry["call"]["linkedid"]] = _call_line(decode_call(entry["call"]))
    return left_open


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        entry = json.loads(line)
    except ValueError:
        return None
    if not isinstance(entry, dict):
        return None
    if isinstance(entry.get("done"), str):
        return entry
    call = entry.get("call")
    if not isinstance(call, dict) or not isinstance(call.get("linkedid"), str):
        return None
    try:
        decode_call(call)
    except (TypeError, ValueError, KeyError):
        return None
    return entry


def _call_line(call: CallRecord) -> bytes:
    return _line({"call": encode_call(call)})


def _done_line(linkedid: str) -> bytes:
    return _line({"done": linkedid})


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hold(lock_path: Path) -> int:
    fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalInUse(
            f"call journal {lock_path.parent} is used by another process; "
            "give each instance its own CALLBRIDGE_JOURNAL_DIR"
        ) from None
    return fd
