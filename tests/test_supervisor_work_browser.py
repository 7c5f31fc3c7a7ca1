"""The supervisor's work in a real browser (Debian's Chromium through Playwright) against the
app under uvicorn fed by the AMI simulator: the pop's complaint form with category and severity,
a complaint assigned and escalated to users picked from a list (and refused once another tab
resolved it), the quality-review scorecard beside a real recording's player, its figures on the
KPIs page and in the Excel export, and the admin's pages reached through one sub-navigation.
Screenshots (1366×768) go to ``test-artifacts/``.

Skipped only when ``/usr/bin/chromium`` is missing and ``CALLBRIDGE_REQUIRE_BROWSER`` is unset
(the ``browser`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from openpyxl import load_workbook
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from test_agent_browser import signed_in_agent_page
from test_pops import CHEAP_ARGON2, PASSWORD, Site, hashed, running_site
from test_supervisor_browser import ARTIFACTS, PBX_FILE, RECORDING, TRACE

from crm_bridge.accounts import users
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.recordings import RecordingsRoot
from crm_bridge.db.models import AuditEntry, Call, Complaint, Customer, QualityReview, User
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, load_trace

WAIT_MS = 15_000
ADMIN = "root"


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(User(username=ADMIN, password_hash=hashed(PASSWORD), role="admin"))
        ARTIFACTS.mkdir(exist_ok=True)
        yield running


async def signed_in(site: Site, browser: Browser, username: str, path: str) -> Page:
    context = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}{path}")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.origin}{path}")
    return page


def audited(site: Site, action: str) -> list[AuditEntry]:
    with site.sessions()() as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.action == action)))


# ------------------------------------------------------------------------------- complaints


async def test_the_pop_takes_a_complaint_with_its_category_and_severity(site, browser):
    page = await signed_in_agent_page(site, browser)
    await site.play("a_inbound_answered_1001")
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(card.locator(".state")).to_contain_text("已结束")
    await site.app.state.runtime.bridge.drain()
    form = card.locator(".complaint-form")
    await card.locator(".complaint-new summary").click()
    await form.locator("select[name=severity]").select_option("urgent")
    await form.locator("textarea[name=content]").fill("送货晚了三天，包装破损")
    await form.locator("button[type=submit]").click()

    error = form.locator("label:has(select[name=category]) + .form-error")  # beside the field
    await expect(error).to_have_text("请选择投诉类别")  # the zh-CN page's half of the message
    await expect(form.locator("textarea[name=content]")).to_have_value("送货晚了三天，包装破损")
    with site.sessions()() as session:
        assert session.scalar(select(Complaint).where(Complaint.content.like("送货%"))) is None
    await card.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "pop_complaint_category_error.png")

    await form.locator("select[name=category]").select_option("delivery")
    await expect(form.locator("select[name=category] option:checked")).to_have_text(
        "物流配送 Delivery"
    )
    await card.locator(".complaint-form button[type=submit]").click()
    await expect(card.locator(".complaint-new")).to_contain_text("投诉已提交")
    await page.screenshot(path=ARTIFACTS / "pop_complaint_saved.png")
    with site.sessions()() as session:
        taken = session.scalar(select(Complaint).where(Complaint.content.like("送货%")))
        assert (taken.category, taken.severity, taken.status) == ("delivery", "urgent", "open")


def a_complaint(site: Site, content: str, category: str, severity: str) -> int:
    with site.sessions().begin() as session:
        zhang = session.scalar(select(Customer).where(Customer.card_no == "C0001"))
        complaint = Complaint(customer_id=zhang.id, received_at=datetime.now(UTC),
                              content=content, category=category, severity=severity)  # fmt: skip
        session.add(complaint)
        session.flush()
        return complaint.id


async def test_a_complaint_is_assigned_and_escalated_to_users_picked_from_the_list(site, browser):
    cid = a_complaint(site, "空调遥控器失灵", "product", "serious")
    other = a_complaint(site, "价格比门店贵", "price", "normal")
    page = await signed_in(site, browser, "lin", "/supervisor/complaints")
    await page.select_option("#complaint-filters select[name=category]", "product")
    await page.select_option("#complaint-filters select[name=severity]", "serious")
    await page.click("#complaint-filters button[type=submit]")
    await expect(page.locator("#complaints tr[data-complaint-id]")).to_have_count(1)
    row = page.locator(f'#complaints tr[data-complaint-id="{cid}"]')
    await expect(row.locator(".category")).to_have_text("产品质量 Product quality")
    await expect(row.locator(".severity")).to_have_text("严重 Serious")
    await expect(page.locator(f'tr[data-complaint-id="{other}"]')).to_have_count(0)

    await row.locator("a").first.click()
    await page.wait_for_url(f"{site.origin}/supervisor/complaints/{cid}")
    handlers = await page.locator("#assign-who option").all_inner_texts()
    assert handlers == ["请选择", "li · 客服专员 Agent", "lin · 客服主管 Supervisor",
                        "wang · 客服专员 Agent"]  # fmt: skip
    assert await page.locator("#escalate-who option").all_inner_texts() == [
        "请选择", "lin · 客服主管 Supervisor", "root · 管理员 Administrator"]  # fmt: skip

    await page.click("#assign button[type=submit]")  # nobody picked
    await expect(page.locator("#assign .error")).to_have_text(
        "请从列表中选择一位用户 / Pick a user from the list"
    )
    await page.select_option("#assign-who", "wang")
    await page.click("#assign button[type=submit]")
    await expect(page.locator("#handler")).to_contain_text("wang")
    await expect(page.locator("#handler")).to_contain_text("lin")
    await page.select_option("#escalate-who", ADMIN)
    await page.fill("#escalate-text", "客户要求赔偿")
    await page.click("#escalate button[type=submit]")
    await expect(page.locator("#escalated-to")).to_contain_text(ADMIN)
    await expect(page.locator("#history")).to_contain_text("升级 Escalated")
    await page.screenshot(path=ARTIFACTS / "supervisor_complaint_assigned.png")

    # Another tab resolves it; escalating from this one is refused beside the field.
    await page.select_option("#escalate-who", "lin")
    await page.fill("#escalate-text", "再次升级")
    other_tab = await page.context.new_page()
    await other_tab.goto(f"{site.origin}/supervisor/complaints/{cid}")
    await other_tab.fill("#resolve-text", "已换新遥控器")
    await other_tab.click("form[action$='/resolve'] button[type=submit]")
    await expect(other_tab.locator("h1")).to_contain_text("已解决")
    await page.click("#escalate button[type=submit]")
    await expect(page.locator("#escalate .error")).to_have_text(
        "投诉已解决或已关闭，不能再处理 / The complaint is resolved or closed"
    )
    await expect(page.locator("#escalate-who")).to_have_value("lin")
    await expect(page.locator("#escalate-text")).to_have_value("再次升级")
    await page.locator("#escalate").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "supervisor_complaint_escalate_refused.png")

    with site.sessions()() as session:
        done = session.get(Complaint, cid)
        assert (done.status, done.handler, done.assigned_by) == ("resolved", "wang", "lin")
        assert (done.escalated_to, done.escalated_by) == (ADMIN, "lin")
    assert [(e.username, e.action, e.details["to"]) for e in
            audited(site, "complaint_assign") + audited(site, "complaint_escalate")] == [
        ("lin", "complaint_assign", "wang"), ("lin", "complaint_escalate", ADMIN)]  # fmt: skip

    await page.goto(f"{site.origin}/supervisor/complaints?status=all")
    await expect(page.locator(f'tr[data-complaint-id="{cid}"] .handler')).to_contain_text("wang")
    await expect(page.locator(f'tr[data-complaint-id="{cid}"] .escalated-to')).to_contain_text(
        ADMIN
    )
    await page.screenshot(path=ARTIFACTS / "supervisor_complaints_list.png")


# ------------------------------------------------------------------------------- scorecards


def a_recorded_call(site: Site) -> int:
    """A real trace's call written by the call log, with its real recording linked."""
    folder = site.settings.recordings_dir
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(RECORDING, folder / PBX_FILE)
    events = CallTracker(server="pbx1").feed_all(
        load_trace(RECORDED_TRACES / "sip" / f"{TRACE}.ami").events
    )
    (call,) = [event.call for event in events if isinstance(event, CallEnded)]
    return CallLog(site.sessions(), NumberRules("CN"), RecordingsRoot(folder)).record(call)


async def fill_scores(page: Page, scores: dict[str, str], comment: str) -> None:
    for key, value in scores.items():
        await page.fill(f"#score-{key}", value)
    await page.fill("#review-comment", comment)
    await page.click("#review-form button[type=submit]")


async def test_a_supervisor_scores_a_call_beside_its_player_and_the_kpis_show_it(site, browser):
    call_id = a_recorded_call(site)
    with site.sessions()() as session:
        call = session.get(Call, call_id)
        agent, day = call.agent, call.offered_at.astimezone(site.settings.zone).date()
    page = await signed_in(site, browser, "lin", f"/supervisor/calls/{call_id}")
    await expect(page.locator("audio.player")).to_have_count(1)
    card = page.locator("#scorecard")
    await expect(card.locator("label")).to_contain_text(
        ["开场问候", "业务准确", "服务态度", "问题解决", "结束语", "评语"]
    )
    scores = {"greeting": "12", "accuracy": "25", "attitude": "18", "resolution": "24",
              "closing": "8"}  # fmt: skip
    await fill_scores(page, scores, "开场语速偏快")
    await expect(page.locator("#error-greeting")).to_have_text(
        "请填 0 到 10 的整数 / A whole number from 0 to 10"
    )
    await expect(page.locator("#score-accuracy")).to_have_value("25")
    await expect(page.locator("#review-comment")).to_have_value("开场语速偏快")
    with site.sessions()() as session:
        assert session.scalar(select(QualityReview)) is None

    await fill_scores(page, scores | {"greeting": "9"}, "开场语速偏快")
    await expect(page.locator("#my-total")).to_have_text("84 / 100")
    await expect(card.locator("[role=status]")).to_contain_text("评分已保存")
    player_box = await page.locator("audio.player").bounding_box()
    card_box = await card.bounding_box()
    assert card_box["x"] > player_box["x"] + player_box["width"]  # beside the player
    assert card_box["y"] < 768  # on the first screen
    await page.screenshot(path=ARTIFACTS / "supervisor_call_scorecard.png")

    await fill_scores(page, {"resolution": "30"}, "问题已解决")  # the reviewer changes it
    await expect(page.locator("#my-total")).to_have_text("90 / 100")

    admin = await signed_in(site, browser, ADMIN, f"/supervisor/calls/{call_id}")
    await expect(admin.locator('.other-review[data-reviewer="lin"]')).to_contain_text("90 / 100")
    await expect(admin.locator("#score-greeting")).to_have_value("")  # their own, empty
    await fill_scores(admin, {"greeting": "10", "accuracy": "30", "attitude": "20",
                              "resolution": "30", "closing": "10"}, "")  # fmt: skip
    await expect(admin.locator("#my-total")).to_have_text("100 / 100")

    with site.sessions()() as session:
        reviews = {r.reviewer: r.total for r in session.scalars(select(QualityReview))}
    assert reviews == {"lin": 90, ADMIN: 100}
    assert [(e.username, e.details["total"]) for e in audited(site, "quality_review")] == [
        ("lin", 84), ("lin", 90), (ADMIN, 100)]  # fmt: skip

    await page.goto(f"{site.origin}/supervisor/kpis?since={day}&until={day}")
    table = page.locator("#kpi-quality")
    await expect(table.locator("th")).to_have_text(["坐席", "质检次数", "平均得分"])  # zh-CN page
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table.locator("tbody td")).to_have_text([agent, "2", "95.0"])
    await table.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "supervisor_kpis_quality.png")

    export = await page.request.get(
        f"{site.origin}/supervisor/kpis/export?table=quality&format=xlsx&since={day}&until={day}"
    )
    assert export.ok
    sheet = load_workbook(io.BytesIO(await export.body())).active
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [
        ["坐席 Agent", "质检次数 Reviews", "平均得分 Average score (/100)"],
        [agent, 2, 95],
    ]

    wang = await signed_in(site, browser, "wang", "/agent")
    token = await wang.locator("#agent-app").get_attribute("data-csrf")
    refused = await wang.request.post(f"{site.origin}/supervisor/calls/{call_id}/review",
                                      form={"csrf_token": token, **scores})  # fmt: skip
    assert refused.status == 403


# ------------------------------------------------------------------------------- admin pages


ADMIN_PAGES = [
    ("/admin/users", "用户管理"),
    ("/admin/do-not-call", "免打扰名单"),
    ("/admin/audit", "审计日志"),
    ("/admin/pause-reasons", "暂停原因"),
    ("/admin/routing", "来电路由"),
    ("/supervisor/queues", "队列设置"),
    ("/supervisor/settings", "设置"),
]


async def test_the_admin_pages_reach_each_other_through_one_sub_navigation(site, browser):
    page = await signed_in(site, browser, ADMIN, "/admin/users")
    nav = page.locator("nav.admin-nav")
    await expect(nav.locator("a")).to_have_count(len(ADMIN_PAGES))
    await page.screenshot(path=ARTIFACTS / "admin_nav.png")
    for path, title in ADMIN_PAGES:
        await nav.locator(f'a[href="{path}"]').click()
        await page.wait_for_url(f"{site.origin}{path}")
        await expect(page.locator("h1")).to_contain_text(title)
        await expect(nav.locator('a[aria-current="page"]')).to_have_attribute("href", path)
        await expect(nav.locator("a")).to_have_count(len(ADMIN_PAGES))
    await page.screenshot(path=ARTIFACTS / "admin_nav_settings.png")

    supervisor = await signed_in(site, browser, "lin", "/supervisor/settings")
    await expect(supervisor.locator("h1")).to_contain_text("设置")
    await expect(supervisor.locator("nav.admin-nav")).to_have_count(0)
    assert re.search(r"/supervisor/settings$", supervisor.url)
