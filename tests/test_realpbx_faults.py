"""Faults in the middle of a real, answered call: Asterisk restarting, the service killed.

- ``core restart now`` while an agent talks: Asterisk hangs every channel up (SoftHangupRequest
  Cause 4) and says ``Shutdown``; the call is logged once, answered by its agent, marked as cut
  by the PBX restart; the bridge is back in step and the next call pops.
- ``callbridge serve`` killed (SIGKILL) while an agent talks and started again: the resync
  rebuilds the call from what Asterisk reports, the agent's page, reconnected, keeps its live
  card, and the call is logged as it was (inbound, its queue and agent, answered, its talk).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest
from realpbx_site import (
    WAIT,
    ZHANG_SAN,
    ZHANG_SAN_RAW,
    frame_of_state,
    kit_settings,
    kit_site,
    logged_call,
    serve_environment,
)
from test_fault_service_restart import Service
from test_pops import CHEAP_ARGON2, PASSWORD, Site, hashed, next_frame, seed

from crm_bridge.accounts import users
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import Recording, User

pytestmark = pytest.mark.realpbx
HOLD = 35
"""Seconds the caller of the killed-service test stays on: enough for a start-up slowed by a
busy machine (the call must still be going when the service is back)."""


def add_desk(database_url: str) -> None:
    """An agent page for both phones: whichever the queue rings, its pop comes here."""
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        session.add(User(username="desk", password_hash=hashed(PASSWORD), role="agent",
                         extensions=["1001", "1002"]))  # fmt: skip
    engine.dispose()


async def kit(pbx, *args: str) -> str:
    return await asyncio.to_thread(pbx, *args)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_pbx_restart_mid_call_logs_it_cut_by_the_restart_and_comes_back(
    pbx_kit, pbx_commands, tmp_path, monkeypatch
):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--ring", "1", "--talk", "30")
    async with kit_site(tmp_path, pbx_kit) as site:
        add_desk(site.settings.database_url)
        bridge = site.app.state.runtime.bridge
        async with site.pops("desk") as desk:
            await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "30")
            answered = await frame_of_state(desk, "answered")
            await asyncio.sleep(1)
            await kit(pbx_commands, "restart", "pbx", "--mode", "core")
            ended = await frame_of_state(desk, "ended")
            assert ended["linkedid"] == answered["linkedid"]
            assert await bridge.wait_connected(timeout=WAIT)

            call = await logged_call(site.origin, number=ZHANG_SAN)
            assert (call["disposition"], call["agent"]) == ("answered", answered["by_agent"])
            assert call["end_reason"] == "pbx_restart"
            assert 1 < call["talk_seconds"] < 10

            await kit(pbx_commands, "call-in", "--from", "13800138001", "--hold", "2")
            after = await next_frame(desk)  # the bridge is back: the next call pops
            assert (after["type"], after["call"]["caller"]) == ("pop", "+8613800138001")
            await frame_of_state(desk, "ended")
        async with site.signed_in("lin") as supervisor:
            assert (await supervisor.get("/health")).json()["status"] == "ok"


async def test_a_service_killed_mid_call_rebuilds_the_call_and_keeps_the_card_live(
    pbx_kit, pbx_commands, tmp_path
):
    settings = kit_settings(tmp_path / "data", pbx_kit)
    seed(settings.database_url)
    add_desk(settings.database_url)
    service = Service(tmp_path, settings.database_url, settings.ami_port)
    service.env = serve_environment(settings)
    page = Site(None, None, f"127.0.0.1:{service.port}", settings)  # type: ignore[arg-type]
    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--ring", "1", "--talk", "30")
    await service.start()
    try:
        async with page.pops("desk") as desk:
            await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", str(HOLD))
            answered = await frame_of_state(desk, "answered")
            agent, linkedid = answered["by_agent"], answered["linkedid"]
            await asyncio.sleep(1)
            await service.kill()
        await service.start()
        async with page.pops("desk") as desk:  # the page reconnects: its card is still live
            card = await next_frame(desk)
            assert (card["type"], card["linkedid"], card["state"]) == ("pop", linkedid, "answered")
            assert (card["by_agent"], card["mine"]) == (agent, True)
            assert card["lookup"]["cards"][0]["name"] == "张三"
            ended = await frame_of_state(desk, "ended", wait=HOLD + WAIT)  # the caller's
            assert ended["linkedid"] == linkedid  # HOLD s may all be still to come
        call = await logged_call(service.origin, number=ZHANG_SAN)
        assert call["linkedid"] == linkedid
        assert (call["direction"], call["disposition"]) == ("inbound", "answered")
        assert (call["agent"], call["queue"]) == (agent, "support")
        assert call["end_reason"] == "hangup"
        assert HOLD - 4 < call["talk_seconds"] < HOLD + 2  # the caller hangs up HOLD s after
        # the PBX answered, the agent answered about 2 s later
        engine = make_engine(settings.database_url)
        with make_session_factory(engine)() as session:
            (recording,) = session.query(Recording).filter_by(call_id=call["id"]).all()
            assert recording.path == f"{linkedid}.wav"  # its VarSet came before the kill
        engine.dispose()
        restarted = (tmp_path / "serve-2.log").read_text(errors="replace")
        bridge_errors = [line for line in restarted.splitlines()
                         if "Getvar" in line or " ERROR crm_bridge.calls" in line]  # fmt: skip
        assert not bridge_errors, restarted[-4000:]
    finally:
        await service.stop()

