"""Errors a person meets in a real browser (Debian's Chromium through Playwright) are pages in
the app's look, not raw JSON: a page the role may not open (403), an address that does not
exist (404), a bad value in an address with the field named (422); each leads back to the
user's own page. API clients keep the JSON. Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from browser_pages import signed_in_page
from playwright.async_api import expect
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2, running_site

from crm_bridge.accounts import users


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


async def test_errors_are_pages_that_say_what_and_lead_back(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in_page(browser, site.origin, "wang", "/admin/users")  # an agent
    await expect(page.locator("#error-title")).to_contain_text("没有权限")
    await expect(page.locator("#error-detail")).to_have_text("权限不足")  # zh page: its half
    await page.screenshot(path=ARTIFACTS / "error-403.png")
    await page.click("#error-home")
    await page.wait_for_url(f"{site.origin}/agent")

    response = await page.goto(f"{site.origin}/no/such/page")
    assert response is not None and response.status == 404
    await expect(page.locator("#error-title")).to_contain_text("找不到此页面")
    await page.screenshot(path=ARTIFACTS / "error-404.png")

    page = await signed_in_page(browser, site.origin, "lin", "/supervisor/calls/not-a-number")
    await expect(page.locator("#error-title")).to_contain_text("地址里有不对的值")
    await expect(page.locator("#error-fields")).to_contain_text("call_id")
    await page.screenshot(path=ARTIFACTS / "error-422.png")
    icon = await page.locator("link[rel=icon]").get_attribute("href")
    assert (await page.request.get(f"{site.origin}{icon}")).ok


async def test_api_clients_and_scripts_keep_the_json(site):
    async with site.signed_in("wang") as agent:
        refused = await agent.get("/admin/users", headers={"Accept": "application/json"})
        assert refused.status_code == 403 and "detail" in refused.json()
    async with httpx.AsyncClient(base_url=site.origin) as client:
        api = await client.get("/api/calls/x", headers={"Accept": "text/html"})
        assert api.status_code == 401 and "detail" in api.json()
        missing = await client.get("/no/such/page")
        assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
