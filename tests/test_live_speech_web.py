"""The live-speech web surface on a running app (without live speech switched on): who may
open the live-call page and what the API says then. The socket's sign-in check is
tests/test_supervisor_sockets.py; the live path on a real call, tests/test_live_speech_pbx.py."""

from __future__ import annotations

from test_pops import site  # noqa: F401  (the running app fixture)


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
