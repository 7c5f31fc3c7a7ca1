"""``callbridge demo`` in a real browser (Debian's Chromium through Playwright), role by role:
every feature the demo says it shows is on the pages.

The demo runs as a user starts it (its own process, ``tests/demo_process.py``), with the real
speech worker on the Korean test model (``CALLBRIDGE_DEMO_LANGUAGE=ko``: the sentence its
customer says and its watch word are Korean; no Mandarin model can be fetched here). Its calls
are the recorded traces replayed four times faster than recorded.

- the agent: the known caller's card, the form for an unknown caller, the chooser of a family
  phone, a withheld number, an abandoned call; a preview dial from ``/me/campaigns`` rings the
  agent's phone and the customer's answer pops the return-visit form, which saves a visit;
- the supervisor: the calls with their recordings playing, the transcript the worker wrote,
  the watch word's flag, the call found by a word said;
- the scheduler: the preview campaign with the agent's answered call;
- with no model, the supervisors' pages say what to install and where to point it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from demo_process import Demo, running_demo
from playwright.async_api import Browser, Page, expect
from speech_fixtures import dither_free_model

from crm_bridge.demo.seed import PREVIEW_CAMPAIGN, WATCH_WORDS

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
WAIT_MS = 90_000
"""A call of the next round, or the next flag sweep (every minute), may be what is waited for."""
WATCH_WORD = WATCH_WORDS["ko"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    model = dither_free_model(tmp_path_factory.getbasetemp())
    env = {"CALLBRIDGE_VOSK_MODEL": str(model), "CALLBRIDGE_DEMO_LANGUAGE": "ko"}
    with running_demo(tmp_path_factory.mktemp("demo"), "--speed", "4", env=env) as running:
        yield running


async def signed_in(browser: Browser, demo: Demo, username: str, path: str) -> Page:
    context = await browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{demo.base_url}{path}")
    await page.fill("#username", username)
    await page.fill("#password", demo.password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{demo.base_url}{path}")
    return page


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=ARTIFACTS / name)


async def see_card(page: Page, inside: str, name: str) -> None:
    """Wait for a pop card holding ``inside``, bring it into view, screenshot the page."""
    card = page.locator("article.card", has=page.locator(inside)).first
    await expect(card).to_be_visible(timeout=WAIT_MS)
    await card.scroll_into_view_if_needed()
    await shot(page, name)


async def test_the_agent_sees_every_kind_of_caller_the_demo_plays(demo, browser):
    page = await signed_in(browser, demo, "agent", "/agent")
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")
    await see_card(page, ".customer-name:has-text('张三')", "demo_agent_known_caller.png")
    await see_card(page, "form.new-customer", "demo_agent_unknown_caller.png")
    abandoned = page.locator("article.card[data-disposition=abandoned]").first
    await expect(abandoned.locator(".state")).to_contain_text("放弃", timeout=WAIT_MS)
    await abandoned.scroll_into_view_if_needed()
    await shot(page, "demo_agent_abandoned_call.png")
    family = page.locator("article.card", has=page.locator(".several")).first
    await expect(family.locator(".several")).to_contain_text("李四", timeout=WAIT_MS)
    await expect(family.locator(".several")).to_contain_text("李小四")
    await family.scroll_into_view_if_needed()
    await shot(page, "demo_agent_family_phone.png")
    await see_card(page, "h2.withheld", "demo_agent_withheld_number.png")


async def test_a_preview_dial_pops_the_return_visit_form_on_the_agents_page(demo, browser):
    agent = await signed_in(browser, demo, "agent", "/agent")
    await expect(agent.locator("#agent-app")).to_have_attribute("data-socket", "open")
    previews = await agent.context.new_page()
    previews.set_default_timeout(WAIT_MS)
    await previews.goto(f"{demo.base_url}/me/campaigns")
    row = previews.locator("#preview-calls section.preview-customer", has_text=PREVIEW_CAMPAIGN)
    name = row.locator(".customer-name")
    customer = (await name.evaluate("e => e.firstChild.textContent")).strip()  # its VIP aside
    await shot(previews, "demo_agent_preview_calls.png")
    await row.locator("button.dial").click()
    await expect(previews.locator("p.done")).to_contain_text("正在呼叫")

    card = agent.locator("article.card", has=agent.locator(".campaign")).first
    await expect(card.locator(".campaign-name")).to_have_text(PREVIEW_CAMPAIGN, timeout=WAIT_MS)
    await expect(card.locator(".customer-name")).to_contain_text(customer)
    form = card.locator("form.visit-form")
    await form.locator("input[name=place]").fill("电话回访")
    await form.locator("textarea[name=opinions]").fill("种植牙恢复良好")
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".saved")).to_contain_text("回访记录已保存")
    await card.scroll_into_view_if_needed()
    await shot(agent, "demo_agent_campaign_pop.png")


async def test_the_supervisor_plays_reads_and_finds_the_demos_calls(demo, browser):
    page = await signed_in(browser, demo, "supervisor", "/supervisor/flags")
    flag = page.locator("#flags td.flag", has_text=WATCH_WORD).first
    for _ in range(3):  # the sweep runs every minute; the page shows what was flagged then
        if await flag.count():
            break
        await page.wait_for_timeout(30_000)
        await page.reload()
    await expect(flag).to_be_visible()
    await expect(page.locator(".demo-speech")).to_have_count(0)  # a model is set
    await shot(page, "demo_supervisor_flags.png")

    await page.goto(f"{demo.base_url}/supervisor/calls?words={WATCH_WORD}")
    found = page.locator("#calls tr[data-call-id]")
    await expect(found.first).to_be_visible(timeout=WAIT_MS)
    await expect(page.locator("#calls tr.hit-line").first).to_contain_text(WATCH_WORD)
    await shot(page, "demo_supervisor_words_said.png")

    await found.first.locator("a").first.click()
    player = page.locator("audio.player").first
    await expect(player).to_be_visible()
    await expect(page.locator("ol.transcript").first).to_contain_text(WATCH_WORD)
    duration = await player.evaluate(
        "a => new Promise(done => a.readyState >= 1 ? done(a.duration)"
        " : a.addEventListener('loadedmetadata', () => done(a.duration)))"
    )
    assert duration > 1  # the browser reads the recording: it has sound, not an empty header
    await shot(page, "demo_supervisor_call_transcript.png")


async def test_the_scheduler_sees_the_preview_campaign_the_agent_dials(demo, browser):
    page = await signed_in(browser, demo, "scheduler", "/campaigns")
    await page.locator("a", has_text=PREVIEW_CAMPAIGN).first.click()
    await expect(page.locator("main")).to_contain_text(PREVIEW_CAMPAIGN)
    await expect(page.locator("main")).to_contain_text("预览")
    await shot(page, "demo_scheduler_campaign.png")


async def test_without_a_model_the_demo_says_what_to_install(tmp_path, browser, monkeypatch):
    monkeypatch.delenv("CALLBRIDGE_VOSK_MODEL", raising=False)
    with running_demo(tmp_path, "--speed", "4") as bare:
        page = await signed_in(browser, bare, "supervisor", "/supervisor/calls")
        notice = page.locator(".demo-speech")
        await expect(notice).to_contain_text("vosk-model-small-cn-0.22")
        await expect(notice).to_contain_text("CALLBRIDGE_VOSK_MODEL")
        await shot(page, "demo_supervisor_no_model.png")
