"""The agent's page in a real browser: Debian's Chromium driven by Playwright, against the app
under uvicorn fed by the AMI simulator. Screenshots go to ``test-artifacts/`` at the repo root.

Skipped only when ``/usr/bin/chromium`` is missing and ``CALLBRIDGE_REQUIRE_BROWSER`` is unset
(CI sets it, so a missing browser fails there).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from test_pops import CHEAP_ARGON2, PASSWORD, ZHANG_SAN, Site, running_site

from crm_bridge import users
from crm_bridge.db.models import Complaint, Customer, CustomerPhone, Purchase, VisitRecord

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FAMILY_PHONE = "+8613800138003"
"""The third caller of trace f; two customers share it."""
WAIT_MS = 10_000

if not CHROMIUM.exists() and not os.environ.get("CALLBRIDGE_REQUIRE_BROWSER"):
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)

from playwright.async_api import Browser, Page, async_playwright, expect  # noqa: E402


def enrich_zhang_san(site: Site) -> None:
    """History for 张三's card, birthday today, and a family of two on ``FAMILY_PHONE``."""
    today = datetime.now(site.settings.zone).date()
    now = datetime.now(UTC)
    with site.sessions().begin() as session:
        zhang = session.query(Customer).filter_by(card_no="C0001").one()
        zhang.birthday = date(1985, today.month, min(today.day, 28))
        zhang.employer, zhang.department = "华联商厦", "采购部"
        session.add_all(
            [
                Purchase(customer=zhang, purchased_on=today - timedelta(days=3),
                         department="家电", amount=Decimal("3999.00"), items="空调 KFR-35"),
                VisitRecord(customer=zhang, visited_at=now - timedelta(days=10), place="门店",
                            opinions="安装师傅很准时", suggestions="希望周末也能安装"),
                Complaint(customer=zhang, received_at=now - timedelta(days=2),
                          content="空调遥控器失灵", status="open"),
            ]
        )  # fmt: skip
        for card_no, name in (("C0003", "王芳"), ("C0004", "王小明")):
            session.add(
                Customer(
                    card_no=card_no,
                    name=name,
                    phones=[CustomerPhone(number_e164=FAMILY_PHONE, kind="home")],
                )
            )
    assert ZHANG_SAN != FAMILY_PHONE


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        enrich_zhang_san(running)
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def signed_in_agent_page(site: Site, browser: Browser) -> Page:
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}/agent")
    assert "/login" in page.url
    await page.fill("#username", "wang")
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.origin}/agent")
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")
    return page


async def no_horizontal_scroll(page: Page) -> bool:
    return await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


async def test_the_agent_sees_known_unknown_and_shared_callers(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in_agent_page(site, browser)
    await expect(page.locator("#bridge-banner")).to_be_hidden()

    await site.play("a_inbound_answered_1001")
    known = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(known).to_have_count(1)
    await expect(known).to_contain_text("C0001")
    await expect(known).to_contain_text("VIP 金卡")
    await expect(known).to_contain_text("今天生日")
    await expect(known).to_contain_text("空调遥控器失灵")
    await expect(known).to_contain_text("安装师傅很准时")
    await expect(known).to_contain_text("¥3,999.00")
    await expect(known.locator(".state")).to_contain_text("已结束")
    await page.screenshot(path=ARTIFACTS / "pop_known.png")

    await site.play("f_inbound_5_concurrent")
    unknown = page.locator("article.card", has=page.locator(".number", has_text="13800138001"))
    form = unknown.locator("form.new-customer")
    await expect(form.locator("input[name=phone]")).to_have_value("+8613800138001")
    await expect(unknown).to_contain_text("新客户")
    await form.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "pop_unknown.png")

    several = page.locator("article.card", has=page.locator(".number", has_text="13800138003"))
    await expect(several).to_contain_text("多位客户使用此号码")
    await expect(several.locator("button.choose")).to_have_count(2)
    await several.locator("button.choose").nth(1).click()
    await expect(several.locator(".customer.chosen .customer-name")).to_have_text("王小明")
    await several.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "pop_multiple.png")

    await expect(page.locator("article.card")).to_have_count(4)
    assert await no_horizontal_scroll(page)

    await form.locator("input[name=name]").fill("客户一")
    await form.locator("input[name=card_no]").fill("N0001")
    await form.locator("button[type=submit]").click()
    await expect(unknown.locator(".customer-name")).to_have_text("客户一")
    with site.sessions()() as session:
        saved = session.query(Customer).filter_by(card_no="N0001").one()
        assert [p.number_e164 for p in saved.phones] == ["+8613800138001"]
