"""Hostile recording paths: whatever path Asterisk (or a tampered database) names, no file
outside the recordings folder is opened or served, the refusal is logged masked and escaped,
and the call is still logged.

Paths come from Hypothesis (``..``, absolute paths, symbolic links out and in loops, NUL and
other control characters, URL-encoded and look-alike dots, names too long for the file system,
the folder itself) and from explicit cases; they go through ``crm_bridge/calls/recordings.py``, the
call log, the bridge fed by the AMI simulator over TCP, and the supervisor's HTTP routes.
"""

from __future__ import annotations

import logging
import shutil
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import count
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from test_pops import CHEAP_ARGON2, Site, running_site

from crm_bridge.accounts import users
from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.recordings import RecordingsRoot, check_file
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, Recording, TranscriptionJob
from telephony.ami_connection import AmiConfig
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker, TrackerPolicy
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SECRET = "fuzz-recordings-secret"
PBX_DIR = "/var/spool/asterisk/monitor"
TRACE = "a_inbound_answered_1001"
REAL = "1795346712.954.wav"
"""The file the trace's CC_RECFILE names, put in the recordings folder."""
OUTSIDE_NAME = "13800138000.wav"
"""The secret file beside the folder; its name is a phone number, which logs must mask."""
WAV = RECORDED_TRACES / "recordings" / "sip_a_inbound_answered_1001.wav"
LONG = "n" * 256 + ".wav"
GOOD = "2026/good.wav"
"""Another real file, named without a Uniqueid (which a renumbered replay would change)."""


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> tuple[RecordingsRoot, Path]:
    """The recordings folder, with the real file, a subfolder and links of every bad kind,
    and the secret file outside it."""
    base = tmp_path_factory.mktemp("paths")
    outside = base / "outside"
    outside.mkdir()
    shutil.copy(WAV, outside / OUTSIDE_NAME)
    folder = base / "recordings"
    (folder / "2026").mkdir(parents=True)
    shutil.copy(WAV, folder / REAL)
    shutil.copy(WAV, folder / GOOD)
    (folder / "out.wav").symlink_to(outside / OUTSIDE_NAME)
    (folder / "outdir").symlink_to(outside)
    (folder / "loop-a.wav").symlink_to("loop-b.wav")
    (folder / "loop-b.wav").symlink_to("loop-a.wav")
    (folder / "self").symlink_to(".")
    (folder / "up").symlink_to("..")
    return RecordingsRoot(folder), outside / OUTSIDE_NAME


@pytest.fixture(scope="module")
def call_log(tmp_path_factory, folders) -> Iterator[tuple[CallLog, object]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'calls.sqlite'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    yield CallLog(sessions, NumberRules("CN"), folders[0]), sessions
    engine.dispose()


def ended_call():
    trace = load_trace(RECORDED_TRACES / "sip" / f"{TRACE}.ami")
    (call,) = [e.call for e in CallTracker(server="pbx").feed_all(trace.events)
               if isinstance(e, CallEnded)]  # fmt: skip
    return call


ENDED = ended_call()
LINKEDIDS = count(1)


@contextmanager
def captured(logger: str = "crm_bridge.calls.recordings") -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    target = logging.getLogger(logger)
    target.addHandler(handler)
    old_level = target.level
    target.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        target.removeHandler(handler)
        target.setLevel(old_level)


def assert_safe_log(records: list[logging.LogRecord]) -> None:
    for record in records:
        message = record.getMessage()
        assert message.isprintable(), repr(message)
        assert OUTSIDE_NAME.removesuffix(".wav") not in message


part = st.one_of(
    st.sampled_from(
        [
            "..",
            ".",
            "",
            REAL,
            "out.wav",
            "outdir",
            OUTSIDE_NAME,
            "loop-a.wav",
            "self",
            "up",
            "2026",
            "%2e%2e",
            "%2e%2e%2f",
            "..%2f",
            "．．",
            "‥",
            ".\u200b.",
            "..\u2215",
            "\uff0f",
            "..\\..",
            "x\x00.wav",
            "x\r\nEvent: Hangup",
            "\t",
            LONG,
            "é" * 130,
            "outside",
            "recordings",
            "a" * 600,
        ]  # fmt: skip
    ),
    st.text(max_size=12),
)
reported_paths = st.builds(
    lambda prefix, parts: prefix + "/".join(parts),
    st.sampled_from(
        [
            "",
            "/",
            f"{PBX_DIR}/",
            PBX_DIR,
            "/etc/",
            "/var/spool/asterisk/monitorX/",
            "ROOT/",
            "ROOT",
            "BASE/",
            "file:///",
        ]
    ),  # fmt: skip
    st.lists(part, max_size=6),
)


def concrete(reported: str, root: RecordingsRoot) -> str:
    """``ROOT`` and ``BASE`` stand for the recordings folder and the folder holding it."""
    return reported.replace("ROOT", str(root.root)).replace("BASE", str(root.root.parent))


@FUZZ
@given(reported=reported_paths)
def test_no_reported_path_leads_out_of_the_folder(folders, reported):
    root, outside = folders
    reported = concrete(reported, root)
    with captured() as records:
        relative = root.relative(reported)
    assert_safe_log(records)
    if relative is None:
        assert [r.getMessage() for r in records if "refused" in r.getMessage()]
        return
    path = root.file(relative)
    assert path is not None and path != root.root and path.is_relative_to(root.root)
    assert path != outside.resolve()
    checked = check_file(path)  # never raises, whatever the file is
    if checked.status == "ok":
        assert path in (root.root / REAL, root.root / GOOD)


@FUZZ
@given(reported=reported_paths)
def test_the_call_is_logged_whatever_its_recording_path(folders, call_log, reported):
    root, outside = folders
    log, sessions = call_log
    call = replace(ENDED, linkedid=f"fuzz-{next(LINKEDIDS)}",
                   recording_path=concrete(reported, root))  # fmt: skip
    with captured() as records:
        call_id = log.record(call)
    assert_safe_log(records)
    with sessions() as session:
        assert session.get(Call, call_id).linkedid == call.linkedid
        linked = session.scalars(select(Recording).where(Recording.call_id == call_id)).all()
    for recording in linked:
        path = root.file(recording.path)
        assert path is not None and path.is_relative_to(root.root) and path != outside.resolve()
        assert recording.status in ("ok", "missing")
        assert (recording.status == "ok") == (path in (root.root / REAL, root.root / GOOD))


@pytest.mark.parametrize(
    "reported",
    [
        "loop-a.wav",  # a symlink loop: resolve() raised RuntimeError and the call was lost
        f"{PBX_DIR}/{LONG}",  # a name past NAME_MAX: is_file() raised OSError, call lost
        f"{PBX_DIR}/self/{LONG}",
        f"{PBX_DIR}/loop-b.wav",
        f"{PBX_DIR}/out.wav",
        f"{PBX_DIR}/outdir/{OUTSIDE_NAME}",
        f"{PBX_DIR}/up/outside/{OUTSIDE_NAME}",
        f"{PBX_DIR}/self",
        f"{PBX_DIR}/.",
        f"{PBX_DIR}/",
        "ROOT",
        "ROOT/.",
        "./",
        "self",
        f"{PBX_DIR}/../../../../etc/passwd",
        f"{PBX_DIR}/{REAL}\x00.txt",
        f"/etc/passwd\x00{PBX_DIR}/{REAL}",
        "BASE/outside/" + OUTSIDE_NAME,
    ],
)
def test_hostile_paths_are_refused_and_the_call_kept(folders, call_log, reported):
    root, outside = folders
    log, sessions = call_log
    call = replace(ENDED, linkedid=f"case-{next(LINKEDIDS)}",
                   recording_path=concrete(reported, root))  # fmt: skip
    with captured() as records:
        call_id = log.record(call)
    assert_safe_log(records)
    assert any("recording path refused" in r.getMessage() for r in records), reported
    with sessions() as session:
        assert session.get(Call, call_id) is not None
        assert session.scalars(select(Recording).where(Recording.call_id == call_id)).all() == []


def test_unreadable_files_inside_the_folder_are_a_status_not_a_lost_call(
    tmp_path, folders, call_log
):
    """A WAV whose chunk size points past the end (the wave module raises RuntimeError) used
    to fail the call log's transaction: the call was lost with it."""
    root, _ = folders
    log, sessions = call_log
    bad = root.root / "2026" / "lying-chunk.wav"
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 8000, 16000, 2, 16)
    bad.write_bytes(b"RIFF\xff\xff\xff\xffWAVE" + fmt + b"LIST\xf0\xff\xff\xff" + bytes(64))
    call = replace(ENDED, linkedid=f"bad-{next(LINKEDIDS)}",
                   recording_path=f"{PBX_DIR}/2026/lying-chunk.wav")  # fmt: skip
    call_id = log.record(call)
    with sessions() as session:
        (recording,) = session.scalars(select(Recording).where(Recording.call_id == call_id))
        job = select(TranscriptionJob).where(TranscriptionJob.recording_id == recording.id)
        assert session.scalar(job) is None
    assert recording.status == "unreadable"


@pytest.mark.parametrize(
    "reported",
    [
        "%2e%2e/outside/" + OUTSIDE_NAME,
        "．．/outside/" + OUTSIDE_NAME,
        "‥/" + OUTSIDE_NAME,
        "..\\..\\" + OUTSIDE_NAME,
        f"{PBX_DIR}/%2F..%2F{OUTSIDE_NAME}",
    ],  # fmt: skip
)
def test_encoded_and_look_alike_dots_are_names_inside_the_folder(folders, call_log, reported):
    """Nothing decodes ``%2e`` or folds ``．`` into ``.``: these name (missing) files inside
    the folder, and are linked as missing, never looked for outside."""
    root, outside = folders
    log, sessions = call_log
    call = replace(ENDED, linkedid=f"case-{next(LINKEDIDS)}", recording_path=reported)
    call_id = log.record(call)
    with sessions() as session:
        (recording,) = session.scalars(select(Recording).where(Recording.call_id == call_id))
    assert recording.status == "missing"
    assert root.file(recording.path).is_relative_to(root.root)
    assert not root.file(recording.path).exists()


# --------------------------------------------------------------------------- over AMI


def hostile_trace(path: str) -> list[dict[str, str]]:
    """The recorded call, its recording named ``path`` wherever Asterisk names it."""
    events = []
    for event in load_trace(RECORDED_TRACES / "sip" / f"{TRACE}.ami").events:
        event = dict(event)
        if event.get("Variable") in ("CC_RECFILE", "MIXMONITOR_FILENAME"):
            event["Value"] = path
        if event.get("Event") == "Cdr" and event.get("Recording"):
            event["Recording"] = path
        events.append(event)
    return events


async def test_hostile_paths_over_ami_leave_the_calls_logged_without_a_file(folders, call_log):
    """The bridge, fed over TCP calls whose CC_RECFILE is hostile, logs each call and links
    no file; a good call after them still gets its recording. (CR/LF cannot travel inside an
    AMI header: Asterisk's own framing splits them, which tests/test_ami_fuzz.py covers.)"""
    root, outside = folders
    _, sessions = call_log
    log = CallLog(sessions, NumberRules("CN"), root)
    hostile = [
        f"{PBX_DIR}/../../../etc/passwd",
        f"{PBX_DIR}/out.wav",
        f"{PBX_DIR}/loop-a.wav",
        f"{PBX_DIR}/{LONG}",
        f"{PBX_DIR}/{REAL}\x00",
        str(outside),
        PBX_DIR,
    ]
    async with AmiSimulator(username="bridge", secret=SECRET) as simulator:
        config = AmiConfig(name="pbx", host="127.0.0.1", port=simulator.port, username="bridge",
                           secret=SECRET)  # fmt: skip
        bridge = BridgeService([config], log, TrackerPolicy())
        with captured() as records:
            await bridge.start()
            try:
                assert await bridge.wait_connected(timeout=10)
                for path in [*hostile, f"{PBX_DIR}/{GOOD}"]:
                    await simulator.play_events(hostile_trace(path), speed=0, renumber=True)
                await bridge.drain()
            finally:
                await bridge.stop()
    assert_safe_log(records)
    refused = [r for r in records if "recording path refused" in r.getMessage()]
    assert len(refused) == len(hostile)
    with sessions() as session:
        calls = session.scalars(
            select(Call).where(Call.linkedid.not_like("fuzz-%"), Call.linkedid.not_like("case-%"),
                               Call.linkedid.not_like("bad-%"))
        ).all()  # fmt: skip
        assert len(calls) == len(hostile) + 1
        linked = session.scalars(
            select(Recording).where(Recording.call_id.in_([c.id for c in calls]))
        ).all()
    assert [(r.path, r.status) for r in linked] == [(GOOD, "ok")]


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


def stored_recording(site: Site, path: str) -> tuple[int, int]:
    """A call and a recording row holding ``path`` (as an older or tampered database might)."""
    with site.sessions().begin() as session:
        call = Call(linkedid=f"http-{next(LINKEDIDS)}", server="pbx1", direction="inbound")
        session.add(call)
        session.flush()
        recording = Recording(call_id=call.id, path=path, status="ok")
        session.add(recording)
        session.flush()
        return call.id, recording.id


STORED_PATHS = [
    "../outside/" + OUTSIDE_NAME,
    "/etc/passwd",
    "out.wav",
    "outdir/" + OUTSIDE_NAME,
    "loop-a.wav",
    "",
    ".",
    "self",
    "up/outside/" + OUTSIDE_NAME,
    LONG,
    "%2e%2e/outside/" + OUTSIDE_NAME,
    "．．/outside/" + OUTSIDE_NAME,
]


async def test_the_audio_route_serves_nothing_outside_the_folder(site):
    folder = site.settings.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    outside = folder.parent / "outside"
    outside.mkdir()
    shutil.copy(WAV, outside / OUTSIDE_NAME)
    secret = (outside / OUTSIDE_NAME).read_bytes()
    (folder / "out.wav").symlink_to(outside / OUTSIDE_NAME)
    (folder / "outdir").symlink_to(outside)
    (folder / "loop-a.wav").symlink_to("loop-b.wav")
    (folder / "loop-b.wav").symlink_to("loop-a.wav")
    (folder / "self").symlink_to(".")
    (folder / "up").symlink_to("..")
    shutil.copy(WAV, folder / REAL)
    stored = {path: stored_recording(site, path) for path in [*STORED_PATHS, REAL]}
    async with site.signed_in("lin") as lin:
        for path, (call_id, recording_id) in stored.items():
            for query in ("", "?download=1"):
                audio = await lin.get(f"/supervisor/recordings/{recording_id}/audio{query}")
                if path == REAL:
                    assert audio.status_code == 200 and audio.content == secret  # same bytes
                    continue
                assert audio.status_code == 404, path
                assert secret[44:2000] not in audio.content
            page = await lin.get(f"/supervisor/calls/{call_id}")
            assert page.status_code == 200
            assert OUTSIDE_NAME not in page.text and "/etc/passwd" not in page.text
        for url in (
            "/supervisor/recordings/..%2F..%2Fetc%2Fpasswd/audio",
            "/supervisor/recordings/%2e%2e/audio",
            "/supervisor/recordings/1%00/audio",
            "/supervisor/recordings/-1/audio",
            "/supervisor/recordings/0x1/audio",
            "/supervisor/recordings/99999999999999999999999/audio",
            "/supervisor/recordings/../../../etc/passwd",
            "/supervisor/recordings/1/../../../../etc/passwd",
        ):
            response = await lin.get(url)
            assert response.status_code in (404, 422), url
            assert secret[44:2000] not in response.content
            assert b"root:" not in response.content


async def test_a_stored_path_with_a_nul_byte_is_404(site):
    _, recording_id = stored_recording(site, f"{REAL}\x00../../etc/passwd")
    async with site.signed_in("lin") as lin:
        response = await lin.get(f"/supervisor/recordings/{recording_id}/audio")
    assert response.status_code == 404
