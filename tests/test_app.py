"""The whole spine over real sockets: simulator -> AMI connection -> tracker -> call log -> API."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Customer, CustomerPhone
from crm_bridge.settings import Settings
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

TRACES = RECORDED_TRACES
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def settings_for(tmp_path: Path, port: int, secret: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        ami_host="127.0.0.1",
        ami_port=port,
        ami_username="bridge",
        ami_secret=secret,
        api_token=TOKEN,
        secret_key="a-test-secret-key-of-some-length",
    )


def seed_zhang_san(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        session.add(
            Customer(
                card_no="C0001",
                name="张三",
                phones=[CustomerPhone(number_e164="+8613800138000", kind="mobile")],
            )
        )
    engine.dispose()


async def wait_for(predicate, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


@pytest.fixture
async def spine(tmp_path):
    """A running app connected to a running simulator; yields (simulator, app, http client)."""
    async with AmiSimulator(username="bridge", secret="s3cret-for-tests") as simulator:
        settings = settings_for(tmp_path, simulator.port, "s3cret-for-tests")
        seed_zhang_san(settings.database_url)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

                async def connected():
                    health = (await client.get("/health")).json()
                    return health["ami"][0]["state"] == "connected"

                await wait_for(connected)
                yield simulator, app, client


async def calls_logged(client, count: int):
    async def enough():
        body = (await client.get("/api/calls", headers=AUTH)).json()
        return body["total"] >= count

    await wait_for(enough)
    return (await client.get("/api/calls", headers=AUTH)).json()


async def test_replayed_calls_reach_the_call_log_and_the_api(spine):
    simulator, _app, client = spine
    for name in ("a_inbound_answered_1001", "e1_outbound_busy"):
        await simulator.play(load_trace(TRACES / "sip" / f"{name}.ami"), speed=0, renumber=True)
    body = await calls_logged(client, 2)
    by_direction = {c["direction"]: c for c in body["calls"]}
    inbound = by_direction["inbound"]
    assert inbound["caller"] == "+8613800138000"
    assert inbound["agent"] == "1001" and inbound["disposition"] == "answered"
    assert inbound["customer_id"] is not None
    assert by_direction["outbound"]["disposition"] == "busy"
    assert by_direction["outbound"]["callee"] == "+8613900000002"
    one = await client.get(f"/api/calls/{inbound['id']}", headers=AUTH)
    assert one.status_code == 200 and one.json()["linkedid"] == inbound["linkedid"]
    assert (await client.get("/api/calls/999999", headers=AUTH)).status_code == 404
    filtered = await client.get("/api/calls", params={"number": "0086 138 0013 8000"}, headers=AUTH)
    assert [c["linkedid"] for c in filtered.json()["calls"]] == [inbound["linkedid"]]


async def test_a_call_cut_by_a_pbx_restart_is_closed_on_resync_as_cut_by_it(spine):
    """The simulator's ``core restart now`` sends Shutdown and no hangups: the call is gone at
    the resync, cut by the restart (a call gone without a Shutdown seen is
    ``lost_while_disconnected``, tests/test_call_tracker.py)."""
    simulator, app, client = spine
    trace = load_trace(TRACES / "sip" / "a_inbound_answered_1001.ami")
    half = len(trace.events) // 2
    await simulator.play_events(trace.events[:half], speed=0)

    async def in_flight():
        health = (await client.get("/health")).json()
        return health["ami"][0]["calls_in_flight"] == 1

    await wait_for(in_flight)
    await simulator.restart(down_seconds=0.3)
    body = await calls_logged(client, 1)
    (call,) = body["calls"]
    assert call["end_reason"] == "pbx_restart"
    assert call["agent"] == "1001"


async def test_customer_lookup_accepts_any_form_of_the_number(spine):
    _simulator, _app, client = spine
    for form in ("+8613800138000", "008613800138000", "138 0013 8000"):
        body = (await client.get("/api/customers", params={"phone": form}, headers=AUTH)).json()
        assert body["number"] == "+8613800138000"
        assert [c["name"] for c in body["customers"]] == ["张三"]
    withheld = await client.get("/api/customers", params={"phone": "anonymous"}, headers=AUTH)
    assert withheld.json()["customers"] == []


PUBLIC_PATHS = {"/health"}


async def test_every_route_but_health_refuses_a_missing_or_wrong_token(spine):
    _simulator, app, client = spine
    documented = app.openapi()["paths"]
    paths = [p for p in documented if p not in PUBLIC_PATHS]
    assert {"/api/calls", "/api/calls/{call_id}", "/api/customers"} <= set(paths)
    for template in paths:
        path = re.sub(r"\{[^}]+\}", "1", template)
        for method in documented[template]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                response = await client.request(
                    method, path, params={"phone": "1"}, headers=headers
                )
                assert response.status_code == 401, (method, path, headers)


async def test_health_reports_database_and_ami(spine):
    _simulator, _app, client = spine
    body = (await client.get("/health")).json()
    assert body["database"] == "ok"
    assert body["ami"][0]["server"] == "default"
    assert body["status"] == "ok"
