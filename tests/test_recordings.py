"""Recordings: confined to the recordings folder, measured, linked to their call, queued.

The calls are the real SIP traces replayed by the AMI simulator over TCP; their recordings are
the real files Asterisk wrote for them (``telephony/traces/recordings``), put where the traces'
``CC_RECFILE`` says, under the bridge's recordings folder.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import PurePosixPath

import pytest
from sqlalchemy import select

from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.recordings import RecordingsRoot, check_file
from crm_bridge.db.models import Call, Recording, TranscriptionJob
from telephony.ami_connection import AmiConfig
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker, TrackerPolicy
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

SECRET = "recordings-test-secret"
TRACE_RECORDINGS = RECORDED_TRACES / "recordings"
PBX_DIR = "/var/spool/asterisk/monitor"
FILES = {  # trace -> (the file its CC_RECFILE names, the file Asterisk wrote for it)
    "a_inbound_answered_1001": ("1795346712.954.wav", "sip_a_inbound_answered_1001.wav"),
    "b_inbound_abandoned": ("1795346724.960.wav", "sip_b_abandoned_EMPTY_44_bytes.wav"),
    "d_outbound_return_visit_answered": ("1795346759.977.wav", "sip_d_outbound_return_visit.wav"),
    "h1_blind_transfer_1001_to_1002": (
        "1795346887.1023.wav",
        "sip_h1_blind_transfer_1001_to_1002.wav",
    ),
}
NO_FILE = "c_inbound_1001_noanswer_1002_answers"  # recorded, but its file is not in the folder


def trace(name: str):
    return load_trace(RECORDED_TRACES / "sip" / f"{name}.ami")


def ended_call(name: str):
    events = CallTracker(server="pbx").feed_all(trace(name).events)
    (call,) = [e.call for e in events if isinstance(e, CallEnded)]
    return call


@pytest.fixture
def root(tmp_path) -> RecordingsRoot:
    folder = tmp_path / "recordings"
    folder.mkdir()
    for name, source in FILES.values():
        shutil.copy(TRACE_RECORDINGS / source, folder / name)
    return RecordingsRoot(folder)


# ----------------------------------------------------------------------------- the folder


def test_paths_asterisk_reports_map_into_the_root(root):
    assert root.relative(f"{PBX_DIR}/1795346712.954.wav") == "1795346712.954.wav"
    assert root.relative(f"{root.root}/1795346712.954.wav") == "1795346712.954.wav"
    assert root.relative("2026/11/23/1795346712.954.wav") == "2026/11/23/1795346712.954.wav"
    assert root.file("1795346712.954.wav") == root.root / "1795346712.954.wav"


def test_a_root_reached_through_a_symlink_takes_paths_in_either_form(root, tmp_path):
    (tmp_path / "monitor").symlink_to(root.root)
    linked = RecordingsRoot(tmp_path / "monitor")
    assert linked.relative(f"{tmp_path}/monitor/1795346712.954.wav") == "1795346712.954.wav"
    assert linked.relative(f"{root.root}/1795346712.954.wav") == "1795346712.954.wav"
    assert linked.relative(f"{tmp_path}/1795346712.954.wav") is None


def test_asterisk_may_record_to_another_folder(root):
    """The ``pbx_recordings_dir`` setting: Asterisk records to /srv/pbx/rec, mounted here as the
    recordings root; its default folder is then no way in."""
    moved = RecordingsRoot(root.root, PurePosixPath("/srv/pbx/rec"))
    assert moved.relative("/srv/pbx/rec/1795346712.954.wav") == "1795346712.954.wav"
    assert moved.relative(f"{PBX_DIR}/1795346712.954.wav") is None
    assert moved.relative("/srv/pbx/rec/../../../etc/passwd") is None


@pytest.mark.parametrize(
    "reported",
    [
        "/etc/passwd",
        f"{PBX_DIR}/../../../../etc/passwd",
        "../outside.wav",
        "a/../../outside.wav",
        "/var/spool/asterisk/monitorX/1.wav",
        PBX_DIR,
        "x.wav\r\nEvent: Hangup",
        "x\x00.wav",
        "",
        "a" * 600 + ".wav",
    ],
)
def test_paths_outside_the_root_are_refused(root, reported):
    assert root.relative(reported) is None


def test_a_symlink_out_of_the_root_is_refused(root, tmp_path):
    secret = tmp_path / "secret.wav"
    shutil.copy(TRACE_RECORDINGS / FILES["a_inbound_answered_1001"][1], secret)
    (root.root / "link.wav").symlink_to(secret)
    (root.root / "dir").symlink_to(tmp_path)
    assert root.relative(f"{PBX_DIR}/link.wav") is None
    assert root.relative(f"{PBX_DIR}/dir/secret.wav") is None
    assert root.file("link.wav") is None


def test_a_refused_path_is_logged_masked_and_escaped(root, caplog):
    with caplog.at_level(logging.WARNING, logger="crm_bridge.calls.recordings"):
        assert root.relative("/tmp/13800138000.wav\nforged line") is None
    (message,) = [r.getMessage() for r in caplog.records]
    assert "refused" in message
    assert "13800138000" not in message and "138****8000" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------- the files


def test_the_real_recordings_are_measured():
    answered = check_file(TRACE_RECORDINGS / "sip_a_inbound_answered_1001.wav")
    assert (answered.status, answered.size_bytes) == ("ok", 95404)
    assert answered.duration_seconds == pytest.approx(47680 / 8000)
    empty = check_file(TRACE_RECORDINGS / "sip_b_abandoned_EMPTY_44_bytes.wav")
    assert (empty.status, empty.size_bytes, empty.duration_seconds) == ("empty", 44, 0.0)


def test_missing_and_corrupt_files_are_told_apart(tmp_path):
    assert check_file(tmp_path / "none.wav").status == "missing"
    assert check_file(None).status == "missing"
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"this is not a RIFF file at all, just text" * 10)
    assert check_file(corrupt).status == "unreadable"


# ----------------------------------------------------------------------------- on the call


def recordings_by_linkedid(sessions) -> dict[str, list[Recording]]:
    with sessions() as session:
        rows = session.execute(select(Call.linkedid, Recording).join(Recording.call)).all()
    found: dict[str, list[Recording]] = {}
    for linkedid, recording in rows:
        found.setdefault(linkedid, []).append(recording)
    return found


def jobs_of(sessions) -> dict[int, TranscriptionJob]:
    with sessions() as session:
        return {job.recording_id: job for job in session.scalars(select(TranscriptionJob))}


def test_a_call_links_its_recording_once_and_queues_one_job(db_sessions, root):
    (root.root / "1795346712.954-in.wav").write_bytes(
        (root.root / "1795346712.954.wav").read_bytes()
    )
    (root.root / "1795346712.954-out.wav").write_bytes(
        (root.root / "1795346712.954.wav").read_bytes()
    )
    call_log = CallLog(db_sessions, NumberRules("CN"), root)
    call = ended_call("a_inbound_answered_1001")
    assert call.recording_path == f"{PBX_DIR}/1795346712.954.wav"
    first = call_log.record(call)
    assert call_log.record(call) == first  # reported again: nothing new
    (recording,) = recordings_by_linkedid(db_sessions)[call.linkedid]
    assert (recording.call_id, recording.path, recording.status) == (
        first,
        "1795346712.954.wav",
        "ok",
    )
    assert recording.duration_seconds == pytest.approx(5.96)
    assert recording.size_bytes == 95404
    assert (recording.agent_path, recording.customer_path) == (
        "1795346712.954-out.wav",
        "1795346712.954-in.wav",
    )
    jobs = jobs_of(db_sessions)
    assert list(jobs) == [recording.id]
    assert (jobs[recording.id].status, jobs[recording.id].attempts) == ("queued", 0)


def test_a_refused_recording_leaves_the_call_logged_without_it(db_sessions, root, caplog):
    call = replace(ended_call("a_inbound_answered_1001"), recording_path="/etc/shadow")
    with caplog.at_level(logging.WARNING, logger="crm_bridge.calls.recordings"):
        call_id = CallLog(db_sessions, NumberRules("CN"), root).record(call)
    with db_sessions() as session:
        assert session.get(Call, call_id).linkedid == call.linkedid
    assert recordings_by_linkedid(db_sessions) == {}
    assert jobs_of(db_sessions) == {}
    assert "recording path refused" in caplog.text


async def test_replayed_calls_get_their_recordings_over_ami(db_sessions, root):
    """The bridge, fed the real traces over a real socket, links each call's file: ok ones are
    measured and queued, the abandoned call's 44-byte file is empty, a lost file is missing."""
    async with AmiSimulator(username="bridge", secret=SECRET) as simulator:
        config = AmiConfig(
            name="pbx", host="127.0.0.1", port=simulator.port, username="bridge", secret=SECRET
        )
        call_log = CallLog(db_sessions, NumberRules("CN"), root)
        bridge = BridgeService([config], call_log, TrackerPolicy())
        await bridge.start()
        try:
            assert await bridge.wait_connected(timeout=10)
            for name in [*FILES, NO_FILE]:
                await simulator.play(trace(name), speed=50, renumber=False)
            await bridge.drain()
        finally:
            await bridge.stop()

    found = recordings_by_linkedid(db_sessions)
    linkedid = {name: ended_call(name).linkedid for name in [*FILES, NO_FILE]}
    status = {name: [r.status for r in found[linkedid[name]]] for name in linkedid}
    assert status == {
        "a_inbound_answered_1001": ["ok"],
        "b_inbound_abandoned": ["empty"],
        "d_outbound_return_visit_answered": ["ok"],
        "h1_blind_transfer_1001_to_1002": ["ok"],
        NO_FILE: ["missing"],
    }
    (transfer,) = found[linkedid["h1_blind_transfer_1001_to_1002"]]
    assert transfer.duration_seconds == pytest.approx(156320 / 8000)
    (lost,) = found[linkedid[NO_FILE]]
    assert (lost.path, lost.size_bytes, lost.duration_seconds) == ("1795346733.966.wav", None, None)
    ok_ids = {r.id for rows in found.values() for r in rows if r.status == "ok"}
    assert set(jobs_of(db_sessions)) == ok_ids


def test_unreadable_is_a_status_the_database_accepts(db_sessions, root):
    (root.root / "1795346712.954.wav").write_bytes(b"RIFF\x00\x00\x00\x00garbage" * 20)
    call_id = CallLog(db_sessions, NumberRules("CN"), root).record(
        ended_call("a_inbound_answered_1001")
    )
    with db_sessions() as session:
        recording = session.scalars(select(Recording).where(Recording.call_id == call_id)).one()
    assert recording.status == "unreadable"
    assert jobs_of(db_sessions) == {}
