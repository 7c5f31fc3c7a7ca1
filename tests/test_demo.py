"""``callbridge demo``: a new user sees calls appear with no Asterisk at hand."""

from __future__ import annotations

import asyncio

import httpx

from crm_bridge.app import create_app
from crm_bridge.settings import Settings

TOKEN = "demo-test-token"


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
