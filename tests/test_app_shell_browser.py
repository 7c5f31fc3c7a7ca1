"""One app, not separate pages, in a real browser (Debian's Chromium through Playwright): every
signed-in page has the navigation bar of the user's role, whose every link opens (no 403); a
page asked for before signing in is shown after; a bad value in an address is named with what
is wrong with it. Screenshots of each role's main page go to ``test-artifacts/``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2, PASSWORD, hashed, running_site

from crm_bridge.accounts import users
from crm_bridge.db.models import User

WAIT_MS = 10_000
NAV_LINKS = {
    "wang": ["/agent", "/me/campaigns", "/me/history"],
    "lin": ["/supervisor/wallboard", "/supervisor/calls", "/supervisor/complaints",
            "/supervisor/kpis"],
    "zhou": ["/campaigns"],
    "root": ["/agent", "/me/campaigns", "/supervisor/wallboard", "/supervisor/calls",
             "/supervisor/complaints", "/supervisor/kpis", "/campaigns", "/admin/users",
             "/admin/do-not-call", "/admin/audit", "/supervisor/settings",
             "/admin/pause-reasons", "/admin/routing"],
}  # fmt: skip
"""What each role's bar links to: wang an agent, lin a supervisor, zhou a scheduler, root an
admin."""
MAIN_PAGES = {"wang": "/agent", "lin": "/supervisor/calls", "zhou": "/campaigns",
              "root": "/admin/users"}  # fmt: skip
BUILT_ELSEWHERE = {"/me/history"}
"""Linked for agents; a page of its own, which may not be in this tree yet."""


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(User(username="root", password_hash=hashed(PASSWORD), role="admin",
                             extensions=[]))  # fmt: skip
        yield running


async def sign_in(page, username: str) -> None:
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def signed_in_page(site, browser, username: str, path: str = "/", locale: str = "zh-CN"):
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale=locale)
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}{path}")
    await sign_in(page, username)
    return page


@pytest.mark.parametrize("username", list(NAV_LINKS))
async def test_every_page_of_a_role_has_its_bar_and_every_link_opens(site, browser, username):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in_page(site, browser, username)
    await page.wait_for_url(f"{site.origin}{MAIN_PAGES[username]}")
    bar = page.locator("header nav.app-nav a")
    hrefs = [await link.get_attribute("href") for link in await bar.all()]
    assert hrefs == NAV_LINKS[username]
    current = page.locator("header nav.app-nav a[aria-current=page]")
    await expect(current).to_have_attribute("href", MAIN_PAGES[username])
    await page.screenshot(path=ARTIFACTS / f"shell-{username}-zh.png")
    for href in hrefs:
        response = await page.goto(f"{site.origin}{href}")
        assert response is not None
        if href in BUILT_ELSEWHERE and response.status == 404:
            continue
        assert response.status == 200, (href, response.status)
        opened = page.locator("header nav.app-nav a[aria-current=page]")
        await expect(opened).to_have_attribute("href", href)


async def test_an_error_page_keeps_the_bar_of_the_signed_in_user(site, browser):
    page = await signed_in_page(site, browser, "wang")
    response = await page.goto(f"{site.origin}/no/such/page")
    assert response is not None and response.status == 404
    await expect(page.locator("header nav.app-nav a[href='/agent']")).to_be_visible()


async def test_a_page_asked_for_before_signing_in_is_shown_after(site, browser):
    target = "/supervisor/calls?number=8000"
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}{target}")
    assert page.url.startswith(f"{site.origin}/login?next=")
    await expect(page.locator("#login-reason")).to_contain_text("请先登录")
    await expect(page.locator("header nav.app-nav")).to_have_count(0)
    await sign_in(page, "lin")
    await page.wait_for_url(f"{site.origin}{target}")
    await expect(page.locator("input[name=number]")).to_have_value("8000")


async def test_a_bad_value_in_an_address_is_named_with_what_is_wrong(site, browser):
    page = await signed_in_page(site, browser, "lin", "/supervisor/calls/not-a-number")
    fields = page.locator("#error-fields li")
    await expect(fields).to_have_count(1)
    await expect(fields.locator(".field-name")).to_have_text("call_id")
    await expect(fields.locator(".field-problem")).to_contain_text("应为整数")
    await expect(fields.locator(".field-value code")).to_have_text("not-a-number")
    await page.screenshot(path=ARTIFACTS / "shell-error-422-zh.png")
