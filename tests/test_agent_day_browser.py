"""The agent's day in a real browser (Debian's Chromium, 1366x768): the card as it pops (it fits
the screen with the wrap-up in view, names the customer as the archive does, counts the
complaint filed from it, draws the birthday cake), the agent's own history and today's
figures (``/me/history``), the calls to return (``/me/callbacks``) and the customer archive
searched and edited outside a call (``/customers``). Screenshots go to ``test-artifacts/``."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from playwright.async_api import Browser, Page, expect
from test_agent_browser import ARTIFACTS, WAIT_MS, enrich_zhang_san, signed_in_agent_page
from test_pops import CHEAP_ARGON2, PASSWORD, ZHANG_SAN, Site, running_site, wait_for

from crm_bridge.accounts import users
from crm_bridge.db.models import (
    AgentStateChange,
    AuditEntry,
    Call,
    CallbackClaim,
    Complaint,
    Customer,
    DoNotCall,
    Purchase,
    Recording,
    User,
    VisitRecord,
)

VIEWPORT = {"width": 1366, "height": 768}


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        enrich_zhang_san(running)
        yield running


def fill_the_card(site: Site) -> None:
    """As much as a card can show: five of each list, tags, a second open complaint, and the
    archive's own name (张三丰), which differs from the name the PBX sends (张三)."""
    today = datetime.now(site.settings.zone).date()
    now = datetime.now(UTC)
    with site.sessions().begin() as session:
        zhang = session.query(Customer).filter_by(card_no="C0001").one()
        zhang.name, zhang.tags = "张三丰", ["老客户", "家电"]
        for n in range(1, 5):
            session.add_all([
                Purchase(customer=zhang, purchased_on=today - timedelta(days=10 * n),
                         department="厨卫", amount=Decimal("199.00") * n, items=f"净水器滤芯 {n}"),
                VisitRecord(customer=zhang, visited_at=now - timedelta(days=20 * n), place="电话",
                            opinions=f"满意 {n}", suggestions="无"),
                Call(linkedid=f"old-{n}", server="main", direction="inbound", caller=ZHANG_SAN,
                     agent="1002", disposition="answered", customer_id=zhang.id,
                     offered_at=now - timedelta(days=n), talk_seconds=60.0 * n),
            ])  # fmt: skip
        session.add(Complaint(customer=zhang, received_at=now - timedelta(days=1),
                              content="送货晚了", status="in_progress"))  # fmt: skip


async def test_the_card_fits_the_screen_with_the_wrap_up_in_view(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    fill_the_card(site)
    page = await signed_in_agent_page(site, browser)
    await site.play("a_inbound_answered_1001")
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三丰"))
    await expect(card.locator(".state")).to_contain_text("已结束")

    # the archive's name is the name; the PBX's caller name is apart, and smaller
    await expect(card.locator(".customer-name")).to_contain_text("张三丰")
    pbx = card.locator(".pbx-name")
    await expect(pbx).to_contain_text("张三")
    sizes = await card.evaluate(
        "c => [c.querySelector('.pbx-name'), c.querySelector('.customer-name')]"
        ".map(e => parseFloat(getComputedStyle(e).fontSize))"
    )
    assert sizes[0] < sizes[1]

    # the whole wrap-up, down to its button, without scrolling
    assert await page.evaluate("window.scrollY") == 0
    await expect(card.locator("form.wrapup button[type=submit]")).to_be_in_viewport(ratio=1)
    await expect(card.locator("form.wrapup select[name=code]")).to_be_in_viewport(ratio=1)
    assert await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )

    # the birthday cake is drawn (an icon, not a glyph the fonts may lack)
    cake = card.locator(".birthday-today img.birthday-icon")
    await expect(cake).to_be_visible()
    assert await cake.evaluate("img => img.complete && img.naturalWidth > 0")

    # the folded lists open on demand
    purchases = card.locator("details.fold", has_text="最近消费")
    await expect(purchases.locator("li").first).to_be_hidden()
    await purchases.locator("summary").click()
    await expect(purchases.locator("li")).to_have_count(5)
    await purchases.locator("summary").click()

    # a complaint filed from the card counts at once
    count = card.locator(".complaint-count")
    await expect(count).to_have_text("2")
    await card.locator(".complaint-new summary").click()
    await card.locator(".complaint-form textarea").fill("安装师傅迟到")
    await card.locator(".complaint-form select[name=category]").select_option("service")
    await card.locator(".complaint-form button[type=submit]").click()
    await expect(card.locator(".complaint-new")).to_contain_text("投诉已提交")
    await expect(count).to_have_text("3")
    await expect(card.locator("details.complaints")).to_contain_text("安装师傅迟到")
    await card.locator(".complaint-new summary").click()
    await page.evaluate("window.scrollTo(0, 0)")
    await expect(card.locator("form.wrapup button[type=submit]")).to_be_in_viewport(ratio=1)
    await page.screenshot(path=ARTIFACTS / "agent_day_card_wrapup_visible.png")


async def signed_in(site: Site, browser: Browser, username: str, path: str) -> Page:
    page = await browser.new_page(viewport=VIEWPORT, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}{path}")
    assert "/login" in page.url
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.origin}{path}")
    return page


async def calls_logged(site: Site, count: int) -> None:
    """Wait until the call log holds ``count`` calls (the replayed calls have ended)."""

    async def logged() -> bool:
        with site.sessions()() as session:
            return session.query(Call).count() >= count

    await wait_for(logged)
    await site.app.state.runtime.bridge.drain()


def older_calls(site: Site, count: int) -> None:
    """``count`` answered calls of wang's (1001) on earlier days, and one of li's (1002)."""
    start = datetime.now(UTC) - timedelta(days=3)
    with site.sessions().begin() as session:
        for n in range(count):
            session.add(Call(linkedid=f"past-{n}", server="main", direction="outbound",
                             caller="1001", callee="+8613900139000", agent="1001",
                             disposition="answered", offered_at=start - timedelta(hours=n),
                             talk_seconds=30.0))  # fmt: skip
        session.add(Call(linkedid="lis-own", server="main", direction="inbound",
                         caller="+8613700137000", agent="1002", disposition="answered",
                         offered_at=start, talk_seconds=10.0))  # fmt: skip


async def state_today(site: Site, agent: str, *spans: tuple[str, str | None, int]) -> None:
    """The agent's state history: each (state, reason, seconds) in turn, ending now, all of it
    inside today (just after the local midnight, the test waits for the spans to fit)."""
    total = sum(seconds for *_, seconds in spans)
    now = datetime.now(site.settings.zone)
    since_midnight = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    if since_midnight < total + 5:
        await asyncio.sleep(total + 5 - since_midnight)
    at = datetime.now(UTC) - timedelta(seconds=total)
    with site.sessions().begin() as session:
        for state, reason, seconds in spans:
            session.add(AgentStateChange(agent=agent, state=state, reason=reason or "",
                                         queues=["support"], at=at))  # fmt: skip
            at += timedelta(seconds=seconds)


async def test_the_agent_sees_their_own_calls_and_todays_figures(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    await site.play("a_inbound_answered_1001")  # 1001 answers 张三
    await site.play("c_inbound_1001_noanswer_1002_answers")  # rings 1001, 1002 answers
    await calls_logged(site, 2)
    older_calls(site, 30)
    spans = (("ready", None, 30), ("paused", "用餐", 20), ("ready", None, 10))
    await state_today(site, "1001", *spans)
    with site.sessions().begin() as session:
        mine = session.query(Call).filter_by(agent="1001", direction="inbound").one()
        talk = round(mine.talk_seconds)
        missed = session.query(Call).filter_by(agent="1002", caller=ZHANG_SAN).one()
        assert missed.agents_rung == ["1001", "1002"]  # the call log keeps whom it rang
        session.add(Recording(call_id=mine.id, path="x.wav", status="ok"))

    page = await signed_in(site, browser, "wang", "/me/history")
    await expect(page.locator("#fig-handled")).to_have_text("1")
    await expect(page.locator("#fig-missed")).to_have_text("1")
    await expect(page.locator("#fig-talk")).to_have_text(f"{talk // 60}:{talk % 60:02d}")
    await expect(page.locator("#fig-paused")).to_have_text("0:20")
    await expect(page.locator("#fig-logged-in")).to_have_text(re.compile(r"^1:[01]\d$"))
    await expect(page.locator("#fig-ready")).to_have_text(re.compile(r"^0:[45]\d$"))
    rows = page.locator("#calls tbody tr")
    await expect(rows).to_have_count(25)
    first = rows.first
    await expect(first).to_contain_text("张三")
    await expect(first).to_contain_text("呼入")
    await expect(first).to_contain_text("138****8000")
    assert "13800138000" not in await page.content()
    assert "lis-own" not in await page.content() and "137****7000" not in await page.content()
    await expect(page.locator("a[href^='/supervisor/calls/']")).to_have_count(0)  # agents: none
    await page.screenshot(path=ARTIFACTS / "agent_day_history.png", full_page=False)

    await page.locator("#older").click()
    await expect(rows).to_have_count(30 + 1 - 25)
    await expect(page.locator("#older")).to_have_count(0)

    # a supervisor at an agent's desk may open the recording and transcript
    with site.sessions().begin() as session:
        session.query(User).filter_by(username="lin").one().extensions = ["1001"]
    boss = await signed_in(site, browser, "lin", "/me/history")
    await expect(boss.locator(f"a[href='/supervisor/calls/{mine.id}']")).to_have_count(1)


OTHER_CALLER = "+8613600136000"
CALLED_BACK = "+8613500135000"


def more_missed_calls(site: Site) -> None:
    """A no-answer from a number on the do-not-call list, and an abandoned call that an agent
    already called back (an outbound call to the number after it)."""
    now = datetime.now(UTC)
    with site.sessions().begin() as session:
        session.add_all([
            Call(linkedid="missed-dnc", server="main", direction="inbound", caller=OTHER_CALLER,
                 disposition="no_answer", offered_at=now - timedelta(minutes=5)),
            Call(linkedid="missed-done", server="main", direction="inbound", caller=CALLED_BACK,
                 disposition="abandoned", offered_at=now - timedelta(minutes=9)),
            Call(linkedid="back-done", server="main", direction="outbound", caller="1002",
                 callee=CALLED_BACK, agent="1002", disposition="answered",
                 offered_at=now - timedelta(minutes=7)),
            DoNotCall(number_e164=OTHER_CALLER, note="投诉骚扰"),
        ])  # fmt: skip


async def test_agents_take_missed_calls_and_call_them_back(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    await site.play("b_inbound_abandoned")  # 张三 hangs up in the queue
    await calls_logged(site, 1)
    more_missed_calls(site)
    wang = await signed_in(site, browser, "wang", "/me/callbacks")
    li = await signed_in(site, browser, "li", "/me/callbacks")
    rows = wang.locator("#callbacks tbody tr")
    await expect(rows).to_have_count(2)  # the one called back already is not there
    zhang = wang.locator("#callbacks tr", has_text="张三")
    await expect(zhang).to_contain_text("138****8000")
    await expect(zhang).to_contain_text("放弃")
    assert CALLED_BACK[-4:] not in await wang.locator("#callbacks").inner_text()

    # both pages show it free; wang takes it first, li's take then says who has it
    await zhang.locator("button.take").click()
    await expect(zhang.locator(".taken-by")).to_contain_text("wang")
    li_zhang = li.locator("#callbacks tr", has_text="张三")
    await li_zhang.locator("button.take").click()
    await expect(li_zhang.locator(".error")).to_contain_text("已由 wang 接手")
    await expect(li_zhang.locator(".error")).to_contain_text("Taken by wang")
    await expect(li_zhang.locator("button.call-back")).to_have_count(0)
    with site.sessions()() as session:
        assert [c.taken_by for c in session.query(CallbackClaim)] == ["wang"]
    await wang.screenshot(path=ARTIFACTS / "agent_day_callbacks.png")

    # the do-not-call list is checked: nothing is sent to Asterisk
    dnc = wang.locator("#callbacks tr", has_text="136****6000")
    await dnc.locator("button.call-back").click()
    await expect(dnc.locator(".error")).to_contain_text("免打扰")
    assert site.simulator.actions_named("Originate") == []

    # wang calls 张三 back through click-to-call: their phone first, then the number
    await zhang.locator("button.call-back").click()
    await expect(wang.locator("#call-status")).to_contain_text("请接起")
    (originate,) = site.simulator.actions_named("Originate")
    assert originate["Channel"] == "PJSIP/1001" and originate["Exten"].endswith("13800138000")
    await expect(wang.locator("#callbacks tr", has_text="张三")).to_have_count(0)
    await li.reload()
    await expect(li.locator("#callbacks tbody tr")).to_have_count(1)


async def test_the_agent_finds_and_edits_a_customer_outside_a_call(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, "wang", "/customers")
    for typed in ("张", "138 0013 8000", "+86 138-0013-8000", "C0001"):
        await page.fill("#q", typed)
        await page.click("form.search button[type=submit]")
        found = page.locator("#found tbody tr")
        await expect(found.filter(has_text="张三")).to_have_count(1)
    await expect(found.first).to_contain_text("138****8000")
    await page.fill("#q", "赵")
    await page.click("form.search button[type=submit]")
    await expect(page.locator("#no-customers")).to_contain_text("没有找到客户")
    await page.fill("#q", "王")
    await page.click("form.search button[type=submit]")
    await expect(page.locator("#found tbody tr")).to_have_count(2)  # 王芳, 王小明
    await page.screenshot(path=ARTIFACTS / "agent_day_customer_search.png")

    await page.fill("#q", "张三")
    await page.click("form.search button[type=submit]")
    await page.locator("#found a", has_text="张三").click()
    await expect(page.locator("#customer-name")).to_contain_text("张三")

    # bad input: each error beside its field, in both languages; what was typed is kept
    await page.fill("#name", "")
    await page.fill("#employer", "华联商厦（新）")
    await page.fill("#birthday", "1985-13-01")
    await page.click("#edit-customer button[type=submit]")
    await expect(page.locator("#name-error")).to_contain_text("请填写姓名")
    await expect(page.locator("#name-error")).to_contain_text("Enter a name")
    await expect(page.locator("#birthday-error")).to_contain_text("YYYY-MM-DD")
    await expect(page.locator("#birthday")).to_have_value("1985-13-01")
    await expect(page.locator("#employer")).to_have_value("华联商厦（新）")
    await expect(page.locator("#employer-error")).to_have_count(0)
    await page.screenshot(path=ARTIFACTS / "agent_day_customer_edit_errors.png")
    with site.sessions()() as session:
        zhang = session.query(Customer).filter_by(card_no="C0001").one()
        assert (zhang.name, zhang.employer) == ("张三", "华联商厦")
        assert session.query(AuditEntry).filter_by(action="customer_edit").count() == 0

    await page.fill("#name", "张三丰")
    await page.fill("#birthday", "1985-03-08")
    await page.select_option("#gender", "M")
    await page.click("#edit-customer button[type=submit]")
    await expect(page.locator("#saved")).to_contain_text("已保存")
    await expect(page.locator("#customer-name")).to_contain_text("张三丰")
    await page.screenshot(path=ARTIFACTS / "agent_day_customer_edit.png")
    with site.sessions()() as session:
        zhang = session.query(Customer).filter_by(card_no="C0001").one()
        assert (zhang.name, zhang.employer, zhang.birthday) == (
            "张三丰", "华联商厦（新）", date(1985, 3, 8))  # fmt: skip
        (entry,) = session.query(AuditEntry).filter_by(action="customer_edit").all()
        assert (entry.username, entry.subject_type, entry.subject_id) == (
            "wang",
            "customer",
            str(zhang.id),
        )
        assert entry.details["changes"]["name"] == ["张三", "张三丰"]
        assert set(entry.details["changes"]) == {"name", "employer", "birthday"}
