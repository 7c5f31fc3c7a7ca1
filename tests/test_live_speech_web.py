"""The live-speech web surface on a running app (without live speech switched on): who may
open the supervisors' socket and page, and what the API says then. The live path itself, on
a real call, is tests/test_live_speech_pbx.py."""

from __future__ import annotations

import json

import pytest
from test_pops import site  # noqa: F401  (the running app fixture)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

TOKEN = {"Authorization": "Bearer test-token-0123456789"}


async def test_only_supervisors_open_the_live_speech_socket(site):  # noqa: F811
    url = f"ws://{site.address}/ws/live-speech"
    supervisor = {"Cookie": await site.cookie("lin")}
    refusals = [
        ({}, site.origin),
        ({"Cookie": await site.cookie("wang")}, site.origin),  # an agent
        ({"Cookie": await site.cookie("zhou")}, site.origin),  # a scheduler
        (supervisor, "http://evil.example"),
    ]
    for headers, origin in refusals:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers, origin=origin):
                pass
        assert refused.value.response.status_code == 403, (headers, origin)
    async with connect(url, additional_headers=supervisor, origin=site.origin) as ws:
        assert json.loads(await ws.recv()) == {"type": "hello", "enabled": False, "calls": []}


async def test_the_api_says_live_speech_is_off_and_lists_no_alerts(site):  # noqa: F811
    async with site.signed_in("lin") as client:
        calls = (await client.get("/api/live-speech/calls")).json()
        alerts = (await client.get("/api/live-speech/alerts", params={"linkedid": "1.0"})).json()
        page = await client.get("/supervisor/live/1.0")
        too_long = await client.get("/api/live-speech/alerts", params={"linkedid": "9" * 65})
    assert calls == {"enabled": False, "max_streams": 0, "streams_active": 0, "calls": []}
    assert alerts == []
    assert page.status_code == 200 and "此通话未在进行" in page.text
    assert too_long.status_code == 404
    async with site.signed_in("wang") as agent:
        assert (await agent.get("/api/live-speech/calls")).status_code in (401, 403)
        assert (await agent.get("/supervisor/live/1.0")).status_code in (401, 403)
