"""The agent page's state controls and the wallboard in Chromium, on the PBX kit's Asterisk.

Screenshots go to ``test-artifacts/``. The wallboard's event-to-screen latency is measured
here on the kit: from the ``Timestamp`` Asterisk puts on a queue-member event (a pause made by
the kit's ``bridge`` AMI account, and a real inbound call reaching an agent) to the moment the
big-screen page in Chromium shows the new state (a MutationObserver in the page notes it).
The figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from datetime import UTC, datetime, timedelta

import pytest
from browser_pages import signed_in_page
from playwright.async_api import Browser, Page, expect
from realpbx_site import WAIT, ZHANG_SAN_RAW, kit_site
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2

from crm_bridge.accounts import users
from telephony.queue_members import IN_USE_STATUSES

pytestmark = pytest.mark.realpbx

WAIT_MS = int(WAIT * 1000)
WANG = "Local/1001@agents/n"
WATCH = """() => {
  window.__seen = []; const last = {};
  const note = () => { for (const row of document.querySelectorAll('#wb-agents tr[data-agent]')) {
      const cell = row.querySelector('.wb-state'); const state = cell.className.split('state-')[1];
      if (last[row.dataset.agent] !== state) { last[row.dataset.agent] = state;
        window.__seen.push({agent: row.dataset.agent, state, at: Date.now() / 1000}); } } };
  new MutationObserver(note).observe(document.querySelector('#wb-agents tbody'),
                                     {childList: true, subtree: true});
  note();
}"""


@pytest.fixture
async def site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        states = running.app.state.runtime.agent_states
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while len(states.link.board.of_interface(WANG)) != 1:
            assert loop.time() < deadline
            await asyncio.sleep(0.05)
        yield running


async def signed_in(site, browser: Browser, username: str, path: str) -> Page:
    return await signed_in_page(browser, site.origin, username, path, height=900, wait_ms=WAIT_MS)


async def test_the_agent_page_logs_in_pauses_and_shows_errors(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, "wang", "/agent/states")
    await expect(page.locator("#state-label")).to_have_text("就绪")
    await page.select_option("#reason", "培训")
    await page.click("#pause")
    await expect(page.locator("#state-label")).to_have_text("暂停（培训）")
    await expect(page.locator("#history tbody tr td").nth(1)).to_have_text("暂停")
    shown = await page.locator("#history tbody tr td").first.inner_text()
    at = datetime.strptime(shown, "%Y-%m-%d %H:%M:%S").replace(tzinfo=site.settings.zone)
    assert abs(datetime.now(UTC) - at) < timedelta(minutes=5)  # the center's clock, not UTC
    await page.screenshot(path=ARTIFACTS / "agent_states_paused.png", full_page=True)
    await page.click("#ready")
    await expect(page.locator("#state-label")).to_have_text("就绪")
    await page.click("#login")  # no queue ticked
    await expect(page.locator("#queues-error")).to_contain_text("没有这个队列")
    await page.screenshot(path=ARTIFACTS / "agent_states_error.png", full_page=True)


def _event_time(heard: list[dict], kind: str, agent_interface: str, test) -> float | None:
    for event in heard:
        if event.get("Event") == kind and event.get("Interface") == agent_interface and test(event):
            return float(event["Timestamp"])
    return None


async def _shown(page: Page, agent: str, state: str, after: float) -> float:
    await page.wait_for_function(
        "([agent, state, after]) => window.__seen.some("
        "s => s.agent === agent && s.state === state && s.at >= after)",
        arg=[agent, state, after],
    )
    seen = await page.evaluate("window.__seen")
    return min(s["at"] for s in seen if s["agent"] == agent and s["state"] == state
               and s["at"] >= after)  # fmt: skip


async def test_the_wallboard_moves_with_the_queue(site, browser, kit_bridge, pbx_commands):
    ARTIFACTS.mkdir(exist_ok=True)
    supervisor = await signed_in(site, browser, "lin", "/supervisor/wallboard")
    await expect(supervisor.locator("#wb-queues tr[data-queue=support]")).to_have_count(1)
    screen = await signed_in(site, browser, "lin", "/wallboard/screen")
    row = screen.locator("#wb-agents tr[data-agent='1001'] .wb-state")
    await expect(row).to_have_class("wb-state state-ready")
    await screen.evaluate(WATCH)
    latencies = []
    for reason in ("小休", "会议", "用餐"):
        kit_bridge.heard.clear()
        for paused, state in (("true", "paused"), ("false", "ready")):
            await kit_bridge.send_action(
                "QueuePause", {"Interface": WANG, "Paused": paused, "Reason": reason}
            )
            loop_deadline = asyncio.get_running_loop().time() + WAIT
            while (at := _event_time(kit_bridge.heard, "QueueMemberPause", WANG,
                                     lambda e, p=paused: e.get("Paused") == ("1" if p == "true" else "0"))) is None:  # fmt: skip  # noqa: E501
                assert asyncio.get_running_loop().time() < loop_deadline
                await asyncio.sleep(0.02)
            latencies.append(await _shown(screen, "1001", state, at - 0.001) - at)
            if state == "paused" and reason == "会议":
                await screen.screenshot(path=ARTIFACTS / "wallboard_screen_paused.png")
    kit_bridge.heard.clear()
    call = asyncio.get_running_loop().run_in_executor(
        None,
        lambda: pbx_commands(
            "call-in", "--from", ZHANG_SAN_RAW, "--hold", "6", "--wait", timeout=90
        ),  # fmt: skip
    )
    shown_at = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while shown_at is None:
        assert loop.time() < deadline
        for interface, agent in ((WANG, "1001"), ("Local/1002@agents/n", "1002")):
            at = _event_time(kit_bridge.heard, "QueueMemberStatus", interface,
                             lambda e: e.get("InCall") == "1" or e.get("Status") in IN_USE_STATUSES)  # fmt: skip  # noqa: E501
            if at is not None:
                shown_at = await _shown(screen, agent, "on_call", at - 0.001)
                latencies.append(shown_at - at)
                break
        await asyncio.sleep(0.02)
    await expect(screen.locator("#wb-agents .wb-customer").filter(has_text="张三")).to_have_count(1)
    await screen.screenshot(path=ARTIFACTS / "wallboard_screen_call.png")
    await supervisor.screenshot(path=ARTIFACTS / "wallboard_supervisor.png", full_page=True)
    await call
    await expect(supervisor.locator("#wb-queues tr[data-queue=support] .wb-answered")).to_have_text(
        "1"
    )
    figure = {
        "wallboard_event_to_screen_ms_p50": round(statistics.median(latencies) * 1000, 1),
        "wallboard_event_to_screen_ms_max": round(max(latencies) * 1000, 1),
        "samples": len(latencies),
    }
    print("\n" + json.dumps(figure))
