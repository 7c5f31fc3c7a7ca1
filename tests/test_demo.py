"""``callbridge demo``: a new user sees calls appear with no Asterisk at hand."""

from __future__ import annotations

import asyncio
import re

import httpx
from argon2 import PasswordHasher
from sqlalchemy import select
from typer.testing import CliRunner

from crm_bridge import cli
from crm_bridge.accounts import users
from crm_bridge.accounts.users import ROLES, authenticate, find_user
from crm_bridge.app import create_app
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import Call, Recording, WatchWord
from crm_bridge.demo.feed import (
    DEMO_ROUND,
    DEMO_USERS,
    TRACE_DIR,
    ensure_demo_users,
    new_demo_password,
)
from crm_bridge.demo.recordings import trace_audio, write_recordings
from crm_bridge.demo.seed import WATCH_WORDS
from crm_bridge.pops.hub import agent_key
from crm_bridge.settings import Settings
from telephony.trace_files import load_trace

TOKEN = "demo-test-token"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


async def test_demo_seeds_the_archive_and_logs_replayed_calls(tmp_path):
    settings = Settings(demo=True, data_dir=tmp_path, api_token=TOKEN, demo_speed=50)
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            health = (await client.get("/health")).json()
            assert health["demo"] is True and health["ami"][0]["state"] == "connected"
            calls: list = []
            for _ in range(200):
                calls = (await client.get("/api/calls", headers=headers)).json()["calls"]
                if {c["direction"] for c in calls} >= {"inbound", "outbound"} and len(calls) >= 4:
                    break
                await asyncio.sleep(0.1)
            zhang = (
                await client.get("/api/customers", params={"phone": "13800138000"}, headers=headers)
            ).json()
    assert {c["direction"] for c in calls} >= {"inbound", "outbound"}
    known = [c for c in calls if c["caller"] == "+8613800138000"]
    assert known and known[0]["customer_id"] == zhang["customers"][0]["id"]
    assert all(c["end_reason"] == "hangup" for c in calls)


async def test_every_demo_call_carries_its_recording_and_the_round_has_every_kind_of_caller(
    tmp_path,
):
    settings = Settings(demo=True, data_dir=tmp_path, api_token=TOKEN, demo_speed=50)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        runtime = app.state.runtime
        for _ in range(600):
            if runtime.demo.rounds:
                break
            await asyncio.sleep(0.1)
        assert runtime.demo.rounds, "no round of the demo ended"
        with runtime.sessions() as session:
            calls = session.scalars(select(Call)).all()
            statuses = {
                call.linkedid: [r.status for r in session.scalars(
                    select(Recording).where(Recording.call_id == call.id))]
                for call in calls
            }  # fmt: skip
            watched = session.scalars(select(WatchWord.word)).all()
    by_caller = {call.caller: call for call in calls if call.direction == "inbound"}
    assert by_caller["+8613912345678"].customer_id is None  # the unknown caller
    assert by_caller["+8613700137000"].customer_id is None  # a family phone: the agent chooses
    assert by_caller["+8613800138000"].customer_id is not None  # 张三
    assert any(call.caller is None for call in calls if call.direction == "inbound")  # withheld
    assert {call.disposition for call in calls} >= {"answered", "abandoned"}
    for call in calls:
        if call.disposition == "answered":
            assert statuses[call.linkedid] == ["ok"], call.linkedid
        elif call.disposition == "abandoned":
            assert statuses[call.linkedid] == ["empty"]  # the 44-byte file MixMonitor leaves
    assert WATCH_WORDS["zh"] in watched


def test_a_recording_a_call_names_outside_the_folder_is_not_written(tmp_path):
    root = RecordingsRoot(tmp_path / "recordings")
    events = [{"Event": "VarSet", "Variable": "CC_RECFILE", "Value": "/etc/callbridge.wav"},
              {"Event": "Cdr", "Recording": "/var/spool/asterisk/monitor/../../x.wav"},
              {"Event": "VarSet", "Variable": "CC_RECFILE",
               "Value": "/var/spool/asterisk/monitor/1.2.wav"}]  # fmt: skip
    assert write_recordings(root, events, trace_audio("a_inbound_answered_1001")) == 1
    assert [p.name for p in (tmp_path / "recordings").iterdir()] == ["1.2.wav"]
    assert not (tmp_path / "x.wav").exists()


# ------------------------------------------------------------------------------- sign-in


async def sign_in(app, username: str, password: str) -> int:
    """The sign-in form as a browser posts it; the status of the answer (303 when signed in)."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
        token = CSRF_RE.search((await client.get("/login")).text).group(1)
        form = {"username": username, "password": password, "csrf_token": token}
        return (await client.post("/login", data=form)).status_code


def test_the_demo_users_cover_every_role_and_the_extensions_the_demo_rings():
    assert {user.role for user in DEMO_USERS} == set(ROLES)
    (agent,) = [user for user in DEMO_USERS if user.role == "agent"]
    rung = set()
    for call in DEMO_ROUND:
        events = load_trace(TRACE_DIR / f"{call.trace}.ami").events
        rung |= {agent_key(e["Interface"]) for e in events if e.get("Event") == "AgentCalled"}
    assert rung and set(agent.extensions) == rung


async def test_a_new_user_signs_in_to_the_demo_with_the_password_of_this_run(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))
    settings = Settings(demo=True, data_dir=tmp_path, api_token=TOKEN, demo_speed=50)
    first, second = new_demo_password(), new_demo_password()
    assert first != second
    ensure_demo_users(settings.database_url, first)
    ensure_demo_users(settings.database_url, second)  # a second run: same users, new password
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        for user in DEMO_USERS:
            assert await sign_in(app, user.username, second) == 303, user
        assert await sign_in(app, "agent", first) != 303


def test_demo_prints_the_url_and_the_password_and_serve_makes_no_users(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024))
    served: list[Settings] = []
    monkeypatch.setattr(cli, "_run", lambda settings, host, port: served.append(settings))
    env = {"CALLBRIDGE_DATA_DIR": str(tmp_path), "CALLBRIDGE_DATABASE_URL": ""}
    result = CliRunner().invoke(
        cli.app, ["demo", "--port", "8123", "--data-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 0, result.output
    assert "http://127.0.0.1:8123/agent" in result.output
    password = re.search(r"本次密码: (\S+)\)", result.output).group(1)
    assert result.output.count(password) == 1
    engine = make_engine(served[0].database_url)
    with make_session_factory(engine)() as session:
        for user in DEMO_USERS:
            saved = find_user(session, user.username)
            assert saved.role == user.role and tuple(saved.extensions) == user.extensions
            assert authenticate(session, user.username, password) is not None
    engine.dispose()

    serve_env = env | {
        "CALLBRIDGE_DATA_DIR": str(tmp_path / "serve"),
        "CALLBRIDGE_API_TOKEN": "a-serve-token-0123456789",
        "CALLBRIDGE_SECRET_KEY": "a-serve-secret-key-0123456789",
        "CALLBRIDGE_AMI_SECRET": "ami-secret",
    }
    result = CliRunner().invoke(cli.app, ["serve", "--port", "8124"], env=serve_env)
    assert result.exit_code == 0, result.output
    assert "password" not in result.output.lower()
    assert not (tmp_path / "serve").exists()  # serve created no database, let alone users
