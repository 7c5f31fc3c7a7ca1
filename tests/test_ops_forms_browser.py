"""The operations forms in Chromium, on an English page and on a Chinese one: the pause
reasons, the queue settings, the agent's state controls, the supervisors' settings and watch
words, the survey prompts. A refused form comes back with status 400, every typed value in its
input, each error beside its field (``aria-invalid`` and ``aria-describedby`` naming it), in
the page's language only, and nothing stored. The KPI tables' headers, the wallboard's states
and the messages the agent's and supervisor's scripts show from the server are in the page's
language too.
Screenshots of each refused form go to ``test-artifacts/``.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from browser_pages import signed_in_page
from playwright.async_api import Browser, Page, expect
from sqlalchemy import func, select
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2
from test_routing import ADMIN
from test_survey import SUPERVISOR, state, survey_site

from crm_bridge.accounts import users
from crm_bridge.db.models import (
    AuditEntry,
    PauseReason,
    QueueSetting,
    SupervisionSetting,
    WatchWord,
)

WAIT_MS = 15_000
LOCALES = {"en": "en-US", "zh": "zh-CN"}
CJK = re.compile(r"[\u3000-\u303f\u3400-\u9fff\uff00-\uffef]")
ENGLISH_WORD = re.compile(r"[a-z]{2,}")
"""What an English phrase holds and a Chinese one does not (it may name WAV or MP3)."""
SUPPORT_MEMBER = {
    "Event": "QueueMemberAdded", "Privilege": "agent,all", "Queue": "support",
    "Interface": "Local/1002@agents/n", "MemberName": "Agent 1002", "StateInterface": "PJSIP/1002",
    "Membership": "dynamic", "Penalty": "0", "Paused": "0", "Status": "1", "InCall": "0",
}  # fmt: skip


async def with_support_queue(site) -> None:
    """The queue ``support`` on the app's queue board, as Asterisk reports a member joining."""
    board = site.app.state.runtime.agent_states.link.board
    deadline = asyncio.get_running_loop().time() + WAIT_MS / 1000
    while "support" not in board.queues:  # until the board's own AMI session is logged in
        assert asyncio.get_running_loop().time() < deadline
        await site.simulator.play_events([SUPPORT_MEMBER], speed=0)
        await asyncio.sleep(0.1)


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with survey_site(tmp_path) as running:
        yield running


async def signed_in(site, browser: Browser, username: str, path: str, lang: str) -> Page:
    page = await signed_in_page(browser, site.origin, username, path, locale=LOCALES[lang])
    await expect(page.locator("html")).to_have_attribute("lang", "en" if lang == "en" else "zh-CN")
    return page


async def submitted(page: Page, button: str) -> int:
    """Click ``button`` and wait for the page the form's POST answers with; its status."""
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.click(button)
    await page.wait_for_load_state()
    return (await answer.value).status


def in_one_language(text: str, lang: str) -> bool:
    """An English message holds no Chinese; a Chinese one no English word."""
    return not (CJK if lang == "en" else ENGLISH_WORD).search(text)


async def error_beside(page: Page, field: str, lang: str, says: dict[str, str]) -> None:
    """The field ``field`` (a selector) is marked invalid and described by an alert in its
    form that says ``says[lang]``, in that language alone."""
    control = page.locator(field).first
    await expect(control).to_have_attribute("aria-invalid", "true")
    error_id = await control.get_attribute("aria-describedby")
    assert error_id
    error = page.locator(f"#{error_id}")
    await expect(error).to_be_visible()
    await expect(error).to_have_attribute("role", "alert")
    await expect(error).to_contain_text(says[lang])
    text = await error.inner_text()
    assert in_one_language(text, lang), text
    assert await page.evaluate(
        """([field, id]) => { const input = document.querySelector(field);
             const error = document.getElementById(id);
             return input.closest("form") === error.closest("form")
               && !!(input.compareDocumentPosition(error) & Node.DOCUMENT_POSITION_FOLLOWING); }""",
        [field, error_id],
    ), f"{error_id} is not after {field} in its form"


def count(site, model) -> int:
    with site.sessions()() as session:
        return session.scalar(select(func.count()).select_from(model))


def audited(site) -> list[str]:
    with site.sessions()() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_refused_pause_reason_keeps_its_text_and_says_why(site, browser, lang):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, ADMIN, "/admin/pause-reasons", lang)
    before = count(site, PauseReason), audited(site)

    await page.fill("#label", "小休")  # already in the list
    assert await submitted(page, "#add-reason button[type=submit]") == 400
    await expect(page.locator("#label")).to_have_value("小休")
    await error_beside(page, "#label", lang, {"en": "already in the list", "zh": "已有此原因"})
    await page.screenshot(path=ARTIFACTS / f"ops_pause_reason_error_{lang}.png")

    await page.fill("#label", "   ")
    assert await submitted(page, "#add-reason button[type=submit]") == 400
    await expect(page.locator("#label")).to_have_value("   ")
    await error_beside(page, "#label", lang, {"en": "1 to 32 characters", "zh": "1–32 个字"})
    assert (count(site, PauseReason), audited(site)) == before


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_refused_queue_settings_keep_every_value_typed(site, browser, lang):
    ARTIFACTS.mkdir(exist_ok=True)
    await with_support_queue(site)
    page = await signed_in(site, browser, "lin", "/supervisor/queues", lang)
    typed = {"after_call_seconds": "4000", "penalty": "x", "service_level_seconds": "0",
             "waiting_alert": "7", "longest_wait_alert_seconds": "90"}  # fmt: skip
    for name, value in typed.items():
        await page.fill(f"#support-{name}", value)
    await page.check("#support-survey")
    before = audited(site)
    assert await submitted(page, "#queue-support button[type=submit]") == 400

    for name, value in typed.items():
        await expect(page.locator(f"#support-{name}")).to_have_value(value)
    await expect(page.locator("#support-survey")).to_be_checked()
    for name, (low, high) in (("after_call_seconds", (0, 3600)), ("penalty", (0, 100)),
                              ("service_level_seconds", (1, 3600))):  # fmt: skip
        says = {"en": f"A whole number from {low} to {high}", "zh": f"请填写 {low}–{high} 的整数"}
        await error_beside(page, f"#support-{name}", lang, says)
    for name in ("waiting_alert", "longest_wait_alert_seconds"):
        await expect(page.locator(f"#support-{name}")).not_to_have_attribute("aria-invalid", "true")
    labels = await page.locator("#queue-support label").all_inner_texts()
    assert all(in_one_language(label, lang) for label in labels), labels
    await page.locator("#queue-support").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / f"ops_queue_settings_error_{lang}.png")
    assert count(site, QueueSetting) == 0 and audited(site) == before


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_agent_state_controls_say_why_beside_the_field(site, browser, lang):
    ARTIFACTS.mkdir(exist_ok=True)
    await with_support_queue(site)
    page = await signed_in(site, browser, "wang", "/agent/states", lang)
    await expect(page.locator("#state-label")).to_have_text(
        "Logged out" if lang == "en" else "未登录"
    )
    await page.select_option("#reason", "培训")
    assert await submitted(page, "#pause") == 400  # not logged into a queue yet
    await expect(page.locator("#reason")).to_have_value("培训")
    await error_beside(page, "#reason", lang,
                       {"en": "Log into a queue first", "zh": "请先登录队列"})  # fmt: skip
    assert await submitted(page, "#login") == 400  # no queue ticked
    await error_beside(page, "#queues-form input[name=queues]", lang,
                       {"en": "No such queue", "zh": "没有这个队列"})  # fmt: skip
    await page.screenshot(path=ARTIFACTS / f"ops_agent_states_error_{lang}.png")
    await page.check("#q-support")
    assert await submitted(page, "#login") == 400  # the simulator knows no QueueAdd
    failed = page.locator("#form-error")
    await expect(failed).to_contain_text(
        "The phone system did not do it: " if lang == "en" else "电话系统未执行："
    )
    await expect(failed).to_contain_text("Invalid/unknown command")  # Asterisk's own words
    await expect(page.locator("#q-support")).to_be_checked()


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_refused_supervisor_settings_and_watch_words_keep_what_was_typed(site, browser, lang):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, "lin", "/supervisor/settings", lang)
    await page.fill("#setting-service_level_seconds", "0")
    await page.fill("#setting-fcr_window_hours", "48")
    assert await submitted(page, "#settings button[type=submit]") == 400
    await expect(page.locator("#setting-service_level_seconds")).to_have_value("0")
    await expect(page.locator("#setting-fcr_window_hours")).to_have_value("48")
    await error_beside(page, "#setting-service_level_seconds", lang,
                       {"en": "A whole number, 1 to 600", "zh": "须为 1-600 的整数"})  # fmt: skip
    labels = await page.locator("#settings label").all_inner_texts()
    assert all(in_one_language(label, lang) for label in labels), labels
    await page.screenshot(path=ARTIFACTS / f"ops_supervisor_settings_error_{lang}.png")
    assert count(site, SupervisionSetting) == 0

    words = count(site, WatchWord)
    await page.fill("#new-word", "two words")
    assert await submitted(page, "#add-word button[type=submit]") == 400
    await expect(page.locator("#new-word")).to_have_value("two words")
    await error_beside(page, "#new-word", lang,
                       {"en": "One word, 1-32 characters", "zh": "不含空格"})  # fmt: skip
    await page.locator("#watch-words").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / f"ops_watch_word_error_{lang}.png")
    assert count(site, WatchWord) == words


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_a_refused_survey_prompt_says_why_beside_its_field(site, browser, lang, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, SUPERVISOR, "/supervisor/survey", lang)
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"these are meeting notes, not audio")
    before = state(site)
    await page.set_input_files("#file-thanks", bad)
    assert await submitted(page, "#upload-thanks button[type=submit]") == 400
    says = {"en": "Not an audio file we can read", "zh": "无法识别的录音文件"}
    await error_beside(page, "#file-thanks", lang, says)
    assert await page.locator("#error-ask").count() == 0
    await page.locator("#prompt-thanks").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / f"ops_survey_prompt_error_{lang}.png")
    assert state(site) == before


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_kpi_tables_are_headed_in_the_page_language(site, browser, lang):
    page = await signed_in(site, browser, "lin", "/supervisor/kpis", lang)
    headers = await page.locator("#kpi-day th, #kpi-day h2, #kpi-agent_time th").all_inner_texts()
    headers = [h.replace("Excel", "").replace("CSV", "") for h in headers]
    assert len(headers) > 10
    assert all(in_one_language(h, lang) for h in headers), headers
    assert ("Answer rate" if lang == "en" else "接通率") in headers


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_scripts_show_the_server_message_in_the_page_language(site, browser, lang):
    agent = await signed_in(site, browser, "wang", "/agent", lang)
    await expect(agent.locator("#agent-app")).to_have_attribute("data-socket", "open")
    await agent.fill("#dial-number", "abc")
    await agent.click("#dial-pad button.dial")
    dial_error = agent.locator("#dial-error")
    await expect(dial_error).to_be_visible()
    text = await dial_error.inner_text()
    assert text and in_one_language(text, lang), text

    supervisor = await signed_in(site, browser, "lin", "/supervisor/supervise", lang)
    await supervisor.evaluate("""() => { const button = document.createElement("button");
        button.dataset.superviseMode = "listen"; button.dataset.linkedid = "1700000000.1";
        button.id = "listen-gone"; document.body.append(button); }""")
    await supervisor.click("#listen-gone")
    status = supervisor.locator("#supervise-status")
    await expect(status).to_have_attribute("data-state", "refused")
    text = await status.inner_text()
    assert text and in_one_language(text, lang), text


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_the_wallboard_names_states_in_the_page_language(site, browser, lang):
    await with_support_queue(site)
    page = await signed_in(site, browser, "lin", "/wallboard/screen", lang)
    state = page.locator("#wb-agents tr[data-agent='1002'] .wb-state")
    await expect(state).to_have_text("Ready" if lang == "en" else "就绪")
    await expect(page.locator("#wb-status")).to_have_text("Live" if lang == "en" else "实时")
