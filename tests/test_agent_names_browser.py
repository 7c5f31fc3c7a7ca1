"""People, not extensions, in a real browser (Debian's Chromium through Playwright): an admin
gives an agent a name on the users page; from then on the call list, the KPIs (and their
exports) and the pop card's last calls show the agent by name with the extension beside; the
call list's agent filter takes part of a name, and says so when a name matches no one."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from test_agent_browser import ARTIFACTS
from test_app_shell_browser import sign_in, signed_in_page
from test_pops import CHEAP_ARGON2, PASSWORD, hashed, running_site

from crm_bridge.accounts import users
from crm_bridge.db.models import Call, User

WAIT_MS = 10_000
NAME = "王小明"


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(User(username="root", password_hash=hashed(PASSWORD), role="admin",
                             extensions=[]))  # fmt: skip
        yield running


async def name_wang(site, browser) -> None:
    admin = await signed_in_page(site, browser, "root", "/admin/users")
    with site.sessions()() as session:
        wang = session.query(User).filter_by(username="wang").one().id
    row = admin.locator(f"#user-{wang}")
    await row.locator("summary").click()
    await admin.fill(f"#display-name-{wang}", f"  {NAME} ")
    await row.locator(f"form[action$='/admin/users/{wang}'] button[type=submit]").click()
    await admin.wait_for_url(f"{site.origin}/admin/users?done=updated")
    await expect(admin.locator(f"#user-{wang} .display-name")).to_have_text(NAME)
    await admin.close()


async def answered_call_of_wang(site) -> None:
    await site.play("a_inbound_answered_1001")
    for _ in range(100):
        with site.sessions()() as session:
            if session.query(Call).filter_by(agent="1001").count():
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the call was not logged")


async def test_the_call_list_names_the_agent_and_the_filter_takes_a_name(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    await name_wang(site, browser)
    await answered_call_of_wang(site)
    page = await signed_in_page(site, browser, "lin", "/supervisor/calls")
    agent_cell = page.locator("td.agent").first
    await expect(agent_cell).to_contain_text(NAME)
    await expect(agent_cell.locator(".aside")).to_have_text("1001")
    await page.screenshot(path=ARTIFACTS / "names-calls.png")

    await page.fill("input[name=agent]", "小明")
    await page.locator("#call-filters button[type=submit]").click()
    await page.wait_for_load_state()
    await expect(page.locator("td.agent")).to_have_count(1)

    await page.fill("input[name=agent]", "赵")
    await page.locator("#call-filters button[type=submit]").click()
    await page.wait_for_load_state()
    await expect(page.locator("td.agent")).to_have_count(0)
    await expect(page.locator("#why-none")).to_contain_text("No agent has “赵” in their name")
    await expect(page.locator("#why-none")).to_contain_text("赵")


async def test_the_kpis_and_their_exports_name_the_agent(site, browser):
    await name_wang(site, browser)
    await answered_call_of_wang(site)
    page = await signed_in_page(site, browser, "lin", "/supervisor/kpis")
    await expect(page.locator("#kpi-agent tbody tr").first).to_contain_text(NAME)
    await expect(page.locator("svg.chart").nth(1)).to_contain_text(f"{NAME} (1001)")
    await page.screenshot(path=ARTIFACTS / "names-kpis.png", full_page=True)
    export = await page.request.get(f"{site.origin}/supervisor/kpis/export?table=agent&format=csv")
    rows = list(csv.reader(io.StringIO((await export.text()).lstrip("\ufeff"))))
    assert rows[0][:2] == ["姓名 Name", "坐席 Agent"]
    assert rows[1][:2] == [NAME, "1001"]


async def test_the_pop_cards_last_calls_name_the_agent(site, browser):
    await name_wang(site, browser)
    await answered_call_of_wang(site)
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}/agent")
    await sign_in(page, "wang")
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")
    await site.play("a_inbound_answered_1001")
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(card).to_contain_text(f"{NAME} (1001)")
    await page.screenshot(path=ARTIFACTS / "names-pop-last-calls.png")
