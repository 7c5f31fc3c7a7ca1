"""Who may open the supervisors' sockets on a running app (the wallboard's and live speech's):
supervisors and admins of this origin only, and what each says first. What they show on real
calls is tests/test_agent_states_browser.py and tests/test_live_speech_pbx.py."""

from __future__ import annotations

import json

import pytest
from test_pops import site  # noqa: F401  (the running app fixture)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


@pytest.mark.parametrize("path", ["/ws/wallboard", "/ws/live-speech"])
async def test_only_supervisors_of_this_origin_open_the_socket(site, path):  # noqa: F811
    url = f"ws://{site.address}{path}"
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
        first = json.loads(await ws.recv())
    if path == "/ws/live-speech":  # this app runs without live speech
        assert first == {"type": "hello", "enabled": False, "calls": []}
    else:  # the whole board, as /wallboard/now gives it
        assert {"now", "connected", "queues", "agents"} <= first.keys()
