"""Retention on SQLite and PostgreSQL with real files: old recordings leave the disk, the call
keeps that they existed, transcripts follow their own setting, nothing outside the recordings
folder is touched; the command, the periodic job and the call page."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from crm_bridge.cli import app as cli
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, Recording, RecordingDeletion, TranscriptSegment
from crm_bridge.supervision.periodic import PeriodicJobs
from crm_bridge.supervision.retention import remove_inside, run_retention
from crm_bridge.supervision.settings import set_setting

WAV = Path(__file__).resolve().parents[1] / "telephony/traces/recordings"
NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
DAYS_TO_TODAY = (datetime.now(UTC) - NOW).days
"""For the runs that use the real clock: ``ended_days_ago`` counts from ``NOW``."""


def add_call(sessions, root: Path, name: str, ended_days_ago: int) -> tuple[int, int]:
    """A call that ended that long ago, with its mixed and per-side recordings on disk."""
    for suffix in ("", "-in", "-out"):
        shutil.copy(WAV / "sip_a_inbound_answered_1001.wav", root / f"{name}{suffix}.wav")
    ended = NOW - timedelta(days=ended_days_ago)
    with sessions.begin() as session:
        call = Call(linkedid=name, server="pbx1", direction="inbound", disposition="answered",
                    offered_at=ended - timedelta(minutes=2), ended_at=ended)  # fmt: skip
        session.add(call)
        session.flush()
        recording = Recording(
            call_id=call.id,
            path=f"{name}.wav",
            status="ok",
            customer_path=f"{name}-in.wav",
            agent_path=f"{name}-out.wav",
        )
        session.add(recording)
        session.flush()
        session.add(TranscriptSegment(recording_id=recording.id, call_id=call.id,
                                      speaker="customer", start_seconds=0.5, end_seconds=2.0,
                                      text="我要投诉", words=[]))  # fmt: skip
        return call.id, recording.id


def configure(sessions, **values) -> None:
    with sessions.begin() as session:
        for key, value in values.items():
            set_setting(session, key, value, by="root")


def test_old_recordings_go_and_the_call_remembers_them(db_sessions, tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    old_call, old_rec = add_call(db_sessions, root, "old", ended_days_ago=91)
    new_call, new_rec = add_call(db_sessions, root, "new", ended_days_ago=89)
    assert run_retention(db_sessions, root, now=NOW).recordings_deleted == 0  # nothing set
    configure(db_sessions, recording_retention_days=90)
    report = run_retention(db_sessions, root, now=NOW)
    assert (report.recordings_deleted, report.files_removed, report.segments_deleted) == (1, 3, 0)
    assert sorted(p.name for p in root.iterdir()) == ["new-in.wav", "new-out.wav", "new.wav"]
    with db_sessions() as session:
        assert session.get(Recording, old_rec) is not None  # the row stays
        assert session.get(RecordingDeletion, old_rec).reason == "retention"
        assert session.get(RecordingDeletion, new_rec) is None
        assert session.scalar(select(func.count(TranscriptSegment.id))) == 2  # kept
    again = run_retention(db_sessions, root, now=NOW)
    assert again.recordings_deleted == 0

    configure(db_sessions, transcript_retention_days=90)
    assert run_retention(db_sessions, root, now=NOW).segments_deleted == 1
    with db_sessions() as session:
        left = session.scalars(select(TranscriptSegment.call_id)).all()
    assert left == [new_call]
    assert old_call != new_call


def test_a_path_outside_the_folder_is_never_removed(sqlite_sessions, tmp_path):
    root = tmp_path / "recordings"
    root.mkdir()
    _, rec = add_call(sqlite_sessions, root, "old", ended_days_ago=400)
    outside = tmp_path / "precious.wav"
    outside.write_bytes(b"RIFF")
    with sqlite_sessions.begin() as session:
        session.get(Recording, rec).agent_path = "../precious.wav"
    configure(sqlite_sessions, recording_retention_days=30)
    report = run_retention(sqlite_sessions, root, now=NOW)
    assert (report.recordings_deleted, report.files_removed) == (1, 2)
    assert outside.exists()


def test_the_command_and_the_periodic_job(tmp_path):
    url = f"sqlite:///{tmp_path / 'callbridge.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    root = tmp_path / "recordings"
    root.mkdir()
    add_call(sessions, root, "first", ended_days_ago=DAYS_TO_TODAY + 40)
    configure(sessions, recording_retention_days=30)
    env = {"CALLBRIDGE_DATA_DIR": str(tmp_path), "CALLBRIDGE_DATABASE_URL": ""}
    result = CliRunner().invoke(cli, ["retention", "run"], env=env)
    assert result.exit_code == 0, result.output
    assert "1 recording(s) deleted (3 file(s))" in result.output
    assert list(root.iterdir()) == []

    add_call(sessions, root, "second", ended_days_ago=DAYS_TO_TODAY + 40)

    async def one_round() -> None:
        jobs = PeriodicJobs([("retention", 3600, lambda: run_retention(sessions, root))])
        jobs.start()
        while list(root.iterdir()):
            await asyncio.sleep(0.05)
        await jobs.stop()

    asyncio.run(asyncio.wait_for(one_round(), 10))
    with sessions() as session:
        assert session.scalar(select(func.count(RecordingDeletion.recording_id))) == 2
    engine.dispose()


@pytest.fixture
async def site(tmp_path, monkeypatch):
    from test_pops import CHEAP_ARGON2, running_site

    from crm_bridge.accounts import users

    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


async def test_the_call_page_says_the_recording_was_deleted(site):
    root = site.settings.recordings_dir
    root.mkdir(parents=True, exist_ok=True)
    sessions = site.sessions()
    call_id, rec = add_call(sessions, root, "old", ended_days_ago=DAYS_TO_TODAY + 40)
    configure(sessions, recording_retention_days=30)
    run_retention(sessions, root)
    async with site.signed_in("lin") as lin:
        page = (await lin.get(f"/supervisor/calls/{call_id}")).text
        assert "按保留期删除" in page and "<audio" not in page
        assert (await lin.get(f"/supervisor/recordings/{rec}/audio")).status_code == 404


@pytest.mark.parametrize("stored", [".", "", "x\x00.wav", "loop.wav", "a" * 300 + ".wav"])
def test_remove_inside_refuses_the_folder_itself_and_paths_no_system_takes(tmp_path, stored):
    """Each of these once stopped the retention job (``os.remove`` of the folder, a NUL, a
    symbolic link loop, a name too long): now the path is just not removed."""
    root = tmp_path / "recordings"
    root.mkdir()
    (root / "loop.wav").symlink_to(root / "loop.wav")
    kept = root / "kept.wav"
    kept.write_bytes(b"RIFF")
    assert remove_inside(root, stored) is False
    assert root.is_dir() and kept.exists()


def test_remove_inside_removes_a_file_inside(tmp_path):
    root = tmp_path / "recordings"
    (root / "2026").mkdir(parents=True)
    (root / "2026" / "a.wav").write_bytes(b"RIFF")
    assert remove_inside(root, "2026/a.wav") is True
    assert not (root / "2026" / "a.wav").exists()
    assert remove_inside(root, "2026/a.wav") is False
