"""Routing by customer value in Chromium: the admin's rules page, its clear errors (beside
their fields, in the page's language), and the decision's label on the agent's pop of a real
call on the PBX kit. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect
from realpbx_site import WAIT, ZHANG_SAN_RAW, kit_site
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2, PASSWORD
from test_routing import ADMIN, routing_site, snapshot
from test_routing_realpbx import LI, WANG, kit, point_dialplan_at, seed_routing, until

from crm_bridge.accounts import users

WAIT_MS = int(WAIT * 1000)


async def signed_in(origin: str, browser: Browser, username: str, path: str) -> Page:
    page = await browser.new_page(viewport={"width": 1366, "height": 900}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{origin}{path}")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{origin}{path}")
    return page


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with routing_site(tmp_path) as running:
        yield running


async def test_the_admin_edits_the_rules_and_sees_clear_errors(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site.origin, browser, ADMIN, "/admin/routing")
    await expect(page.locator("h1")).to_have_text("来电路由 Call routing")
    await expect(page.locator("body")).to_contain_text("Priority by VIP level")

    await page.fill("#tier", "钻石卡")
    await page.fill("#priority", "10")
    before = snapshot(site)
    await page.click("#add-tier button[type=submit]")
    await expect(page.locator("#tier-error")).to_have_text("没有这个会员等级的客户")  # zh-CN only
    await expect(page.locator("#tier")).to_have_attribute("aria-describedby", "tier-error")
    await expect(page.locator("#tier")).to_have_value("钻石卡")
    assert snapshot(site) == before
    await page.screenshot(path=ARTIFACTS / "routing_admin_error.png", full_page=True)

    await page.fill("#tier", "金卡")
    await page.click("#add-tier button[type=submit]")
    await expect(page.locator("#tiers")).to_contain_text("金卡")
    await page.fill("#high_value_yuan", "5000")
    await page.fill("#manager_ring_seconds", "12")
    await page.fill("#complaint_queue", "senior")
    await page.click("#settings button[type=submit]")
    await expect(page.locator("#high_value_yuan")).to_have_value("5000.00")
    await page.fill("#card_no", "C0001")
    await page.fill("#extension", "1002")
    await page.click("#add-manager button[type=submit]")
    await expect(page.locator("#managers")).to_contain_text("张三")
    await page.screenshot(path=ARTIFACTS / "routing_admin.png", full_page=True)
    rules = site.app.state.runtime.routing.rules
    assert rules.tiers == {"金卡": 10} and rules.complaint_queue == "senior"
    assert rules.high_value_cents == 500_000 and rules.manager_ring_seconds == 12


@pytest.fixture
async def kit_routing_site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with kit_site(tmp_path, pbx_kit) as running:
        states = running.app.state.runtime.agent_states
        await until(lambda: states.link.board.of_interface(WANG)
                    and states.link.board.of_interface(LI))  # fmt: skip
        seed_routing(running)
        point_dialplan_at(pbx_commands, running.app.state.runtime.routing.server.port)
        yield running


@pytest.mark.realpbx
async def test_the_pop_of_a_vip_call_shows_the_decision(kit_routing_site, pbx_commands, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    site = kit_routing_site
    page = await signed_in(site.origin, browser, "wang", "/agent")
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")
    pbx_commands("agent", "1001", "--behaviour", "noanswer")
    pbx_commands("agent", "1002", "--behaviour", "noanswer")
    await kit(pbx_commands, "call-in", "--from", ZHANG_SAN_RAW, "--hold", "6")
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(card.locator(".route")).to_have_text("VIP · 优先接入")
    await page.screenshot(path=ARTIFACTS / "pop_route_vip.png")
