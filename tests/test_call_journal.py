"""The ended-call journal (``crm_bridge/calls/journal.py``): calls survive on disk until the call
log has them, a torn last line is dropped, the replay is idempotent, the file is compacted.

The bridge tests run the real pipeline: the AMI simulator replays recorded calls over a real
socket, the bridge journals them and writes a real SQLite call log.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_bridge.calls import journal as call_journal
from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.in_progress import calls_unlogged_when_known
from crm_bridge.calls.journal import JOURNAL_FILE, CallJournal, JournalInUse
from crm_bridge.db.models import Call
from telephony.ami_connection import AmiConfig
from telephony.call_events import CallRecord, Direction, Disposition, EndReason
from telephony.call_tracker import TrackerPolicy
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

SECRET = "journal-test-secret"


def a_call(linkedid: str, **extra) -> CallRecord:
    return CallRecord(
        linkedid=linkedid,
        server="pbx",
        direction=Direction.INBOUND,
        caller="13800138000",
        caller_name="张三",
        callee="600",
        offered_at=1_700_000_000.25,
        ended_at=1_700_000_030.5,
        disposition=Disposition.ABANDONED,
        agents_rung=["1001", "1002"],
        end_reason=EndReason.HANGUP,
        **extra,
    )


def journal_lines(folder: Path) -> list[dict]:
    text = (folder / JOURNAL_FILE).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()]


def logged(sessions) -> list[str]:
    with sessions() as session:
        return list(session.scalars(select(Call.linkedid).order_by(Call.linkedid)))


def test_a_call_comes_back_as_it_went_in(tmp_path):
    call = a_call("1700000000.1", queue="support", hangup_cause=16, campaign="7")
    journal = CallJournal.load(tmp_path)
    journal.append([call])
    journal.close()
    back = CallJournal.load(tmp_path).unconfirmed()
    assert back == [call]
    assert type(back[0].direction) is Direction and type(back[0].end_reason) is EndReason


def test_a_torn_last_line_is_dropped_and_the_file_repaired(tmp_path, caplog):
    journal = CallJournal.load(tmp_path)
    journal.append([a_call("1.1"), a_call("1.2")])
    journal.close()
    whole = (tmp_path / JOURNAL_FILE).read_bytes()
    torn = whole.splitlines(keepends=True)[0][:40]  # killed while writing a third line
    (tmp_path / JOURNAL_FILE).write_bytes(whole + torn)

    again = CallJournal.load(tmp_path)
    assert [c.linkedid for c in again.unconfirmed()] == ["1.1", "1.2"]
    assert "torn" in caplog.text
    again.append([a_call("1.3")])  # lands on a line of its own, not glued to the torn tail
    again.close()
    assert [c.linkedid for c in CallJournal.load(tmp_path).unconfirmed()] == ["1.1", "1.2", "1.3"]


def test_done_calls_are_not_replayed_and_the_file_empties(tmp_path):
    journal = CallJournal.load(tmp_path)
    journal.append([a_call("2.1"), a_call("2.2"), a_call("2.3")])
    journal.done(["2.2"])
    assert [e.get("done") for e in journal_lines(tmp_path)] == [None, None, None, "2.2"]
    journal.close()

    journal = CallJournal.load(tmp_path)
    assert [c.linkedid for c in journal.unconfirmed()] == ["2.1", "2.3"]
    assert len(journal_lines(tmp_path)) == 2  # compacted at load
    journal.done(["2.1", "2.3", "2.9"])  # 2.9 was never journaled: ignored
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0
    journal.append([a_call("2.4")])
    journal.close()
    assert [c.linkedid for c in CallJournal.load(tmp_path).unconfirmed()] == ["2.4"]


def test_a_long_run_of_done_lines_is_compacted(tmp_path, monkeypatch):
    monkeypatch.setattr(call_journal, "COMPACT_AFTER", 3)
    journal = CallJournal.load(tmp_path)
    journal.append([a_call("3.0")])  # stays open throughout
    for n in range(1, 4):
        journal.append([a_call(f"3.{n}")])
        journal.done([f"3.{n}"])
    assert [e["call"]["linkedid"] for e in journal_lines(tmp_path)] == ["3.0"]
    journal.close()


def test_one_folder_one_process(tmp_path):
    journal = CallJournal.load(tmp_path)
    with pytest.raises(JournalInUse):
        CallJournal.load(tmp_path)
    journal.close()
    CallJournal.load(tmp_path).close()


async def start_bridge(sim: AmiSimulator, sessions, journal: CallJournal) -> BridgeService:
    config = AmiConfig(
        name="pbx", host="127.0.0.1", port=sim.port, username="bridge", secret=SECRET
    )
    bridge = BridgeService([config], CallLog(sessions, NumberRules("CN")), TrackerPolicy(), journal)
    await bridge.start()
    assert await bridge.wait_connected(timeout=10)
    return bridge


async def test_the_replay_at_start_writes_each_left_call_once(tmp_path, sqlite_sessions):
    CallLog(sqlite_sessions, NumberRules("CN")).record(a_call("4.1"))  # made it before the kill
    journal = CallJournal.load(tmp_path)
    journal.append([a_call("4.1"), a_call("4.2"), a_call("4.3")])
    journal.done(["4.3"])  # confirmed, but the call log lost it: not replayed
    journal.close()

    async with AmiSimulator(secret=SECRET) as sim:
        for _ in range(2):  # a second start (killed again) replays nothing twice
            bridge = await start_bridge(sim, sqlite_sessions, CallJournal.load(tmp_path))
            await bridge.stop()
    assert logged(sqlite_sessions) == ["4.1", "4.2"]
    assert (tmp_path / JOURNAL_FILE).stat().st_size == 0


async def test_calls_are_on_disk_while_the_database_cannot_take_them(
    tmp_path, sqlite_url, sqlite_sessions
):
    """SQLite held by another writer (every call-log write waits, then fails 'database is
    locked' and is retried): the ended calls are in the journal meanwhile, and leave it once the
    call log has them. Until then they still count as calls to be logged, so that a campaign
    does not take their attempts for lost."""
    journal_dir = tmp_path / "journal"
    blocker = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    async with AmiSimulator(secret=SECRET) as sim:
        bridge = await start_bridge(sim, sqlite_sessions, CallJournal.load(journal_dir))
        try:
            blocker.execute("BEGIN IMMEDIATE")
            trace = load_trace(RECORDED_TRACES / "sip" / "f_inbound_5_concurrent.ami")
            await sim.play(trace, speed=0)
            async with asyncio.timeout(10):
                while len(journal_lines(journal_dir)) < 5:
                    await asyncio.sleep(0.05)
            journaled = {e["call"]["linkedid"] for e in journal_lines(journal_dir)}
            assert logged(sqlite_sessions) == []
            assert calls_unlogged_when_known(bridge) == journaled  # none in progress any more
            blocker.execute("ROLLBACK")
            await asyncio.wait_for(bridge.drain(), timeout=30)
            assert calls_unlogged_when_known(bridge) == frozenset()
        finally:
            blocker.close()
            await bridge.stop()
    assert sorted(journaled) == logged(sqlite_sessions)
    with sqlite_sessions() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 5
    assert (journal_dir / JOURNAL_FILE).stat().st_size == 0
