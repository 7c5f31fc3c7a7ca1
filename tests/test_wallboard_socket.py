"""Who may open the wallboard's socket, on a running app: supervisors and admins of this
origin only. What it shows on real calls is tests/test_agent_states_browser.py."""

from __future__ import annotations

import pytest
from test_pops import site  # noqa: F401  (the running app fixture)
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus


async def test_only_supervisors_open_the_wallboard_socket(site):  # noqa: F811
    url = f"ws://{site.address}/ws/wallboard"
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
        assert ws.response.status_code == 101
