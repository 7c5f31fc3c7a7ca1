"""What an agent typed is never lost, in a real browser (Debian's Chromium through Playwright):
an ended card with a typed, unsaved wrap-up note or a half-filled new-customer form outlives
``ENDED_VISIBLE_MS`` and says so; it goes when saved or discarded on purpose, and leaving the
page with unsaved input asks first. The page's clock is Playwright's, moved on by hand, so no
test waits the real minute. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from test_agent_browser import ARTIFACTS, enrich_zhang_san
from test_pops import CHEAP_ARGON2, PASSWORD, running_site

from crm_bridge.accounts import users

WAIT_MS = 10_000
LEAVING_IS_HELD = """() => {
  const leaving = new Event("beforeunload", { cancelable: true });
  window.dispatchEvent(leaving);
  return leaving.defaultPrevented;
}"""
"""Whether the page's beforeunload handler holds the page (the browser then asks the user)."""


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        enrich_zhang_san(running)
        yield running


async def test_an_ended_card_with_unsaved_input_stays_until_saved_or_discarded(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.clock.install()
    await page.goto(f"{site.origin}/agent")
    await page.fill("#username", "wang")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.origin}/agent")
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")

    await site.play("a_inbound_answered_1001")
    await site.play("f_inbound_5_concurrent")
    known = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    unknown = page.locator("article.card", has=page.locator(".number", has_text="13800138001"))
    untouched = page.locator("article.card", has=page.locator(".number", has_text="13800138003"))
    for card in (known, unknown, untouched):
        await expect(card.locator(".state")).to_contain_text("已结束")
    await known.locator("form.wrapup textarea[name=note]").click()  # a user's gesture
    await known.locator("form.wrapup textarea[name=note]").fill("客户要求周五回电")
    await unknown.locator("form.new-customer input[name=name]").fill("孙")

    await page.clock.run_for("02:00")  # past ENDED_VISIBLE_MS and the fade
    await expect(untouched).to_have_count(0)
    await expect(known).to_have_count(1)
    await expect(unknown).to_have_count(1)
    await expect(known.locator(".unsaved-notice")).to_contain_text("未保存")
    await expect(unknown.locator(".unsaved-notice button.discard")).to_be_visible()
    await expect(known.locator("textarea[name=note]")).to_have_value("客户要求周五回电")
    await known.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "agent_unsaved_cards_kept.png")

    assert await page.evaluate(LEAVING_IS_HELD)  # leaving the page asks first
    asked = []

    async def on_dialog(dialog):
        asked.append(dialog.type)
        await dialog.accept()

    page.on("dialog", on_dialog)
    await unknown.locator("button.discard").click()
    await expect(unknown).to_have_count(0)
    assert asked == ["confirm"]

    await known.locator("form.wrapup select[name=code]").select_option("inquiry")
    await known.locator("form.wrapup button[type=submit]").click()
    await expect(known.locator("form.wrapup .saved")).to_be_visible()
    await page.clock.fast_forward("00:05")
    await expect(known).to_have_count(0)
    assert not await page.evaluate(LEAVING_IS_HELD)
    await page.screenshot(path=ARTIFACTS / "agent_unsaved_cards_done.png")
