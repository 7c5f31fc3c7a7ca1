"""The ring alert, the call controls on the live card, the dial pad and the keyboard shortcuts
in a real browser (Debian's Chromium through Playwright), against the app under uvicorn fed by
the AMI simulator: a recorded call answered on 1001, played up to its ringing, then up to its
answer (the card stays live). Screenshots go to ``test-artifacts/`` at 1366×768.

What Asterisk does with a control is the real-PBX test's (``tests/test_call_controls_realpbx.py``);
here the refusals the bridge gives before sending anything: a transfer target that is no agent
extension, and a dial-pad number on the do-not-call list.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect
from test_agent_browser import ARTIFACTS, enrich_zhang_san, signed_in_agent_page
from test_pops import CHEAP_ARGON2, Site, running_site, trace

from crm_bridge.accounts import users
from crm_bridge.call_controls.domain import NOT_AN_AGENT, ON_DO_NOT_CALL
from crm_bridge.db.models import AuditEntry, DoNotCall
from crm_bridge.web.language import ZH, one_language

DNC_NUMBER = "13900000006"
TRACE = "a_inbound_answered_1001"


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        enrich_zhang_san(running)
        with running.sessions().begin() as session:
            session.add(DoNotCall(number_e164="+86" + DNC_NUMBER, note="asked", added_by="lin"))
        yield running


def call_in_three(name: str) -> tuple[list[dict], list[dict], list[dict]]:
    """The trace's events up to its first AgentCalled, then up to its AgentConnect, the rest."""
    events = trace(name).call_events
    rang = next(i for i, e in enumerate(events) if e["Event"] == "AgentCalled") + 1
    answered = next(i for i, e in enumerate(events) if e["Event"] == "AgentConnect") + 1
    return events[:rang], events[rang:answered], events[answered:]


def audited(site: Site) -> list[str]:
    with site.sessions()() as session:
        return [entry.action for entry in session.query(AuditEntry).order_by(AuditEntry.id)]


async def test_ring_alert_live_card_controls_dial_pad_and_shortcuts(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in_agent_page(site, browser)
    title = await page.title()
    ringing, answering, rest = call_in_three(TRACE)

    await page.locator("h1").click()  # browsers let a page sound once the user has used it
    await site.simulator.play_events(ringing, speed=0, renumber=False)
    card = page.locator("article.card", has=page.locator(".customer-name", has_text="张三"))
    await expect(card.locator(".state")).to_contain_text("振铃中")
    await expect(page).to_have_title("【来电】+8613800138000 Incoming call")
    await expect(page.locator("#agent-app")).to_have_attribute("data-ring-sound", "running")
    await page.screenshot(path=ARTIFACTS / "call_ringing_alert.png")

    await site.simulator.play_events(answering, speed=0, renumber=False)
    await expect(card.locator(".state")).to_contain_text("通话中")
    await expect(page).to_have_title(title)  # the alert stops once nobody rings
    controls = card.locator(".controls")
    for label in ("保持", "挂断", "转接", "咨询转接"):
        await expect(controls.get_by_role("button", name=label, exact=False).first).to_be_visible()
    await expect(controls.get_by_role("button", name="恢复", exact=False)).to_be_hidden()

    target = controls.locator("input[name=target]")
    await controls.locator("select[name=target_kind]").select_option("agent")
    await target.fill("2001")
    await controls.get_by_role("button", name="转接", exact=True).click()
    error = controls.locator(".transfer .form-error")
    await expect(error).to_have_text(one_language(NOT_AN_AGENT, ZH))  # the zh-CN page's half
    await expect(target).to_have_value("2001")  # what was typed stays
    await expect(card.locator(".state")).to_contain_text("通话中")  # nothing else changed
    await page.screenshot(path=ARTIFACTS / "call_controls_live_card.png")

    number = page.locator("#dial-number")
    await number.click()
    await page.keyboard.type("h?x")  # shortcuts never fire while typing in a field
    await expect(number).to_have_value("h?x")
    await expect(page.locator("#shortcuts")).not_to_be_visible()
    await number.fill("")
    for key in DNC_NUMBER:
        await page.locator(f"#dial-pad button[data-key='{key}']").click()
    await expect(number).to_have_value(DNC_NUMBER)
    await page.get_by_role("button", name="呼叫", exact=True).click()
    await expect(page.locator("#dial-error")).to_have_text(one_language(ON_DO_NOT_CALL, ZH))
    await expect(number).to_have_value(DNC_NUMBER)
    await expect(number).to_have_attribute("aria-invalid", "true")
    await page.screenshot(path=ARTIFACTS / "dial_pad_do_not_call.png")
    sent = [action for action in audited(site) if action == "dial" or action.startswith("call_")]
    assert sent == []  # both refused before anything was sent or audited

    await page.keyboard.press("Escape")  # leaves the field
    await page.keyboard.press("?")
    help_box = page.locator("#shortcuts")
    await expect(help_box).to_be_visible()
    await expect(help_box).to_contain_text("保持 / 恢复")
    await page.screenshot(path=ARTIFACTS / "agent_shortcuts_help.png")
    await page.keyboard.press("Escape")
    await expect(help_box).not_to_be_visible()
    await page.keyboard.press("d")
    await expect(number).to_be_focused()
    await page.keyboard.press("Escape")
    await page.keyboard.press("t")
    await expect(target).to_be_focused()

    await site.simulator.play_events(rest, speed=0, renumber=False)
    await expect(card.locator(".state")).to_contain_text("已结束")
    await expect(controls).to_have_count(0)  # no controls on an ended call
