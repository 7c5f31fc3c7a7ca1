"""The agent's page in a real browser: Debian's Chromium driven by Playwright, against the app
under uvicorn fed by the AMI simulator. Screenshots go to ``test-artifacts/`` at the repo root.

Skipped only when ``/usr/bin/chromium`` is missing and ``CALLBRIDGE_REQUIRE_BROWSER`` is unset
(the ``browser`` fixture of tests/conftest.py)
(CI sets it, so a missing browser fails there).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect
from test_pops import (
    AMI_SECRET,
    CHEAP_ARGON2,
    FRAME_WAIT,
    PASSWORD,
    ZHANG_SAN,
    Site,
    first_events_through,
    running_site,
    seed,
    served,
    site_settings,
    wait_for,
)

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.db.models import (
    Call,
    CallNote,
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    User,
    VisitRecord,
)
from crm_bridge.pops import page as web_agent
from telephony.simulator import AmiSimulator

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FAMILY_PHONE = "+8613800138003"
"""The third caller of trace f; two customers share it."""
WAIT_MS = 10_000


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
    await expect(several.locator(".choices")).to_contain_text("王芳")
    await several.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "pop_multiple.png")

    await expect(page.locator("article.card")).to_have_count(4)
    assert await no_horizontal_scroll(page)

    await site.app.state.runtime.bridge.drain()  # the ended calls are in the call log
    await several.locator("button.choose").nth(1).click()
    await expect(several.locator(".customer-name")).to_have_text("王小明")
    await expect(several.locator(".choices")).to_have_count(0)
    family_call = await several.get_attribute("data-linkedid")
    assert linked_customer(site, family_call) == ("王小明", "C0004")

    await form.locator("input[name=name]").fill("客户一")
    await form.locator("input[name=card_no]").fill("N0001")
    await form.locator("button[type=submit]").click()
    await expect(unknown.locator(".customer-name")).to_have_text("客户一")
    with site.sessions()() as session:
        saved = session.query(Customer).filter_by(card_no="N0001").one()
        assert [p.number_e164 for p in saved.phones] == ["+8613800138001"]
    new_call = await unknown.get_attribute("data-linkedid")
    assert linked_customer(site, new_call) == ("客户一", "N0001")


async def test_the_agent_wraps_up_complains_and_calls_back_from_the_card(site, browser):
    page = await signed_in_agent_page(site, browser)
    await site.play("a_inbound_answered_1001")
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(card.locator(".state")).to_contain_text("已结束")
    await site.app.state.runtime.bridge.drain()
    linkedid = await card.get_attribute("data-linkedid")

    wrapup = card.locator("form.wrapup")
    await wrapup.locator("select[name=code]").select_option("after_sales")
    await wrapup.locator("textarea[name=note]").fill("遥控器换新")
    await wrapup.locator("button[type=submit]").click()
    await expect(wrapup.locator(".saved")).to_be_visible()

    await card.locator(".complaint-new summary").click()
    await card.locator(".complaint-form select[name=category]").select_option("delivery")
    await card.locator(".complaint-form textarea").fill("安装延误两天")
    await card.locator(".complaint-form button[type=submit]").click()
    await expect(card.locator(".complaint-new")).to_contain_text("投诉已提交")
    await card.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "pop_wrapup.png")

    with site.sessions()() as session:
        note = session.query(CallNote).filter_by(linkedid=linkedid).one()
        assert (note.wrapup_code, note.note) == ("after_sales", "遥控器换新")
        assert note.agent_username == "wang"
        complaint = session.query(Complaint).filter_by(content="安装延误两天").one()
        assert complaint.linkedid == linkedid and complaint.status == "open"
        assert (complaint.category, complaint.severity) == ("delivery", "normal")

    await card.locator("button.click-to-call").first.click()
    await expect(card.locator(".call-status")).to_contain_text("请接起话机")
    assert [a["Channel"] for a in site.simulator.actions_named("Originate")] == ["PJSIP/1001"]


def linked_customer(site: Site, linkedid: str | None) -> tuple[str, str]:
    """The customer the agent linked to the call, as (name, card no.)."""
    with site.sessions()() as session:
        customer_id = session.query(Call.customer_id).filter_by(linkedid=linkedid).scalar()
        customer = session.get(Customer, customer_id)
        return customer.name, customer.card_no


async def test_the_page_shows_when_the_bridge_loses_asterisk(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in_agent_page(site, browser)
    banner = page.locator("#bridge-banner")
    await expect(banner).to_be_hidden()
    restart = asyncio.create_task(site.simulator.restart(down_seconds=3))
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("与电话系统 (Asterisk) 的连接已断开")
    await page.screenshot(path=ARTIFACTS / "pop_bridge_lost.png")
    await restart
    await expect(banner).to_be_hidden()
    await expect(page.locator("#socket-banner")).to_be_hidden()


async def test_the_page_reconnects_by_itself_when_the_server_comes_back(
    tmp_path, monkeypatch, browser
):
    """The service is stopped and another one started on the same port, database and secret
    key (so the page's signed cookie still holds): the open page shows that it lost the server,
    comes back by itself on one socket, and the next call pops on it without a reload."""
    ARTIFACTS.mkdir(exist_ok=True)
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with AmiSimulator(username="bridge", secret=AMI_SECRET) as simulator:
        settings = site_settings(tmp_path, simulator.port)
        seed(settings.database_url)
        first = create_app(settings)
        async with served(first) as address:
            assert await first.state.runtime.bridge.wait_connected(timeout=FRAME_WAIT)
            page = await signed_in_agent_page(Site(simulator, first, address, settings), browser)
            await page.evaluate("window.signedInPage = true")
        # uvicorn has stopped: the page says so and keeps trying
        await expect(page.locator("#socket-banner")).to_be_visible()
        await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "closed")
        await page.screenshot(path=ARTIFACTS / "pop_socket_lost.png")

        second = create_app(settings)
        port = int(address.rsplit(":", 1)[1])
        async with served(second, port=port) as again:
            assert again == address
            runtime = second.state.runtime
            assert await runtime.bridge.wait_connected(timeout=FRAME_WAIT)
            site = Site(simulator, second, address, settings)
            open_again = expect(page.locator("#agent-app"))
            await open_again.to_have_attribute("data-socket", "open", timeout=4 * WAIT_MS)
            await expect(page.locator("#socket-banner")).to_be_hidden()

            async def one_socket() -> bool:
                return runtime.pops.connections == 1

            await wait_for(one_socket)
            await site.play("a_inbound_answered_1001")
            zhang = page.locator(".customer-name", has_text="张三")
            known = page.locator("article.card", has=zhang)
            await expect(known).to_have_count(1)
            await expect(known.locator(".state")).to_contain_text("已结束")
            assert await page.evaluate("window.signedInPage === true")  # the same page
            assert runtime.pops.connections == 1
            await page.screenshot(path=ARTIFACTS / "pop_after_reconnect.png")


async def test_a_page_back_closes_calls_that_ended_meanwhile_and_a_revoked_user_signs_in_again(
    site, browser, monkeypatch
):
    """The socket is closed under the page twice: first because the agent's extensions
    changed (the cookie still signs them in: the page comes back by itself, and the card of
    the call that ended meanwhile shows it ended), then because the agent was deactivated
    (the page goes to the sign-in page)."""
    monkeypatch.setattr(web_agent, "SESSION_CHECK_SECONDS", 0.2)
    hub = site.app.state.runtime.pops
    page = await signed_in_agent_page(site, browser)
    ringing, rest = first_events_through("a_inbound_answered_1001", "AgentCalled")
    await site.simulator.play_events(ringing, speed=0, renumber=False)
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(card.locator(".state")).to_contain_text("振铃中")

    set_user(site, "wang", extensions=["1001", "1009"])

    async def page_gone() -> bool:
        return hub.connections == 0

    await wait_for(page_gone)
    await site.simulator.play_events(rest, speed=0, renumber=False)

    async def call_let_go() -> bool:
        return hub.calls_held == 0

    await wait_for(call_let_go)
    assert hub.connections == 0, "the page came back before the call ended: nothing tested"
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")
    await expect(card.locator(".state")).to_contain_text("已结束")
    await page.screenshot(path=ARTIFACTS / "pop_ended_while_away.png")

    set_user(site, "wang", active=False)
    await page.wait_for_url(f"{site.origin}/login?next=%2Fagent")


def set_user(site: Site, username: str, **columns) -> None:
    with site.sessions().begin() as session:
        user = session.query(User).filter_by(username=username).one()
        for column, value in columns.items():
            setattr(user, column, value)
