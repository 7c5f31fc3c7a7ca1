"""The satisfaction survey in Chromium: the prompts page (zh-CN), a bad
upload refused beside its field with nothing changed, an upload that plays from then on; the
score on the call page; CSAT in the KPI tables and their Excel export; on the PBX kit, the
survey turned on in the queue settings and a real call's score on its page. Screenshots at
1366×768 go to ``test-artifacts/``."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest
from playwright.async_api import Browser, Page, expect
from realpbx_site import ZHANG_SAN, kit_site, logged_call
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2, PASSWORD
from test_survey import SUPERVISOR, state, survey_site, wav
from test_survey_realpbx import ami, ask_prompt, call_in, kit, press, ran, until

from crm_bridge.accounts import users
from crm_bridge.db.models import Call, QueueSetting, SurveyPrompt

WAIT_MS = 30_000


async def signed_in(origin: str, browser: Browser, username: str, path: str) -> Page:
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{origin}{path}")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{origin}{path}")
    return page


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with survey_site(tmp_path / "app") as running:
        yield running


async def test_the_supervisor_uploads_a_prompt_and_sees_a_bad_file_refused(site, browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site.origin, browser, SUPERVISOR, "/supervisor/survey")
    await expect(page.locator("h1")).to_have_text("满意度评价 Satisfaction survey")
    await expect(page.locator("#prompt-ask")).to_contain_text("请您为本次服务评分")
    await expect(page.locator("#prompt-ask")).to_contain_text("Default")
    await expect(page.locator("#queues-on")).to_contain_text("none")

    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"these are meeting notes, not audio")
    before = state(site)
    await page.set_input_files("#file-thanks", bad)
    await page.click("#upload-thanks button[type=submit]")
    error = page.locator("#error-thanks")
    await expect(error).to_contain_text("无法识别的录音文件")
    await expect(error).not_to_contain_text("Not an audio file")  # the zh-CN page's half only
    assert await page.locator("#error-ask").count() == 0
    assert state(site) == before
    await page.locator("#prompt-thanks").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "survey_prompts_error.png")

    good = tmp_path / "thanks-44k.wav"
    good.write_bytes(wav(44100, 2, 1.5))
    await page.set_input_files("#file-thanks", good)
    await page.click("#upload-thanks button[type=submit]")
    await expect(page.locator("#prompt-thanks")).to_contain_text("已上传")
    await expect(page.locator("#prompt-thanks")).to_contain_text("1.5")
    await expect(page.locator("#prompt-ask")).to_contain_text("Default")
    with site.sessions()() as session:
        assert session.get(SurveyPrompt, "thanks").uploaded_by == SUPERVISOR
    await page.screenshot(path=ARTIFACTS / "survey_prompts.png", full_page=True)


def seed_scored_calls(site) -> dict[str, int]:
    """Today's answered calls: 1001 scored 4, 5 and 2; 1002 scored 3 and not scored once."""
    now = datetime.now(UTC) - timedelta(minutes=30)
    scores = [("1001", 4), ("1001", 5), ("1001", 2), ("1002", 3), ("1002", None)]
    ids = {}
    with site.sessions().begin() as session:
        for n, (agent, score) in enumerate(scores):
            call = Call(linkedid=f"survey-{n}", server="default", direction="inbound",
                        caller="+8613800138000", callee="4008001234", queue="support",
                        agent=agent, disposition="answered",
                        offered_at=now + timedelta(minutes=n), wait_seconds=3.0,
                        answered_at=now + timedelta(minutes=n, seconds=3), talk_seconds=60.0,
                        ended_at=now + timedelta(minutes=n, seconds=63),
                        survey_score=score)  # fmt: skip
            session.add(call)
            session.flush()
            ids[call.linkedid] = call.id
    return ids


async def test_the_score_on_the_call_page_and_csat_in_the_kpis(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    ids = seed_scored_calls(site)
    page = await signed_in(site.origin, browser, SUPERVISOR, f"/supervisor/calls/{ids['survey-0']}")
    score = page.locator("#survey-score")
    await expect(score).to_contain_text("4 / 5")
    await expect(score).to_contain_text("满意")
    await expect(score).not_to_contain_text("Satisfied")
    await page.locator("#survey-score").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "survey_call_page.png")
    await page.goto(f"{site.origin}/supervisor/calls/{ids['survey-4']}")
    await expect(page.locator("#survey-score")).to_contain_text("未评价 Not scored")

    await page.goto(f"{site.origin}/supervisor/kpis")
    agents = page.locator("#kpi-agent")
    await expect(agents.locator("thead")).to_contain_text("满意度")
    await expect(agents.locator("thead")).not_to_contain_text("CSAT")
    row_1001 = agents.locator("tbody tr", has_text="1001")
    await expect(row_1001).to_contain_text("66.7%")  # 4 and 5 of 4, 5, 2
    await expect(row_1001).to_contain_text("3.67")
    row_1002 = agents.locator("tbody tr", has_text="1002")
    await expect(row_1002).to_contain_text("0.0%")  # one scored, a 3
    await expect(page.locator("#kpi-queue tbody tr", has_text="support")).to_contain_text("50.0%")
    await expect(page.locator("#kpi-day tbody tr").first).to_contain_text("50.0%")
    await agents.scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "survey_kpis.png")

    async with page.expect_download() as download_info:
        await agents.get_by_role("link", name="Excel").click()
    download = await download_info.value
    sheet = openpyxl.load_workbook(io.BytesIO((await download.path()).read_bytes())).active
    rows = list(sheet.iter_rows(values_only=True))
    header = list(rows[0])
    by_agent = {row[header.index("坐席 Agent")]: row for row in rows[1:]}
    assert by_agent["1001"][header.index("满意度 CSAT")] == pytest.approx(0.6667)
    assert by_agent["1001"][header.index("评价数 Surveyed")] == 3
    assert by_agent["1002"][header.index("平均评分 Mean score")] == 3


@pytest.fixture
async def kit_survey_site(pbx_kit, pbx_commands, tmp_path, monkeypatch):
    """The app on the PBX kit, its greetings the kit's, the dialplan asking its FastAGI server;
    the kit's ``bridge`` account and the carrier's AMI beside it."""
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    (tmp_path / "greetings").symlink_to(pbx_kit["greetings"], target_is_directory=True)
    async with kit_site(tmp_path, pbx_kit) as running:
        port = running.app.state.runtime.routing.server.port
        pbx_commands("rx", "pbx", f"dialplan set global CC_ROUTE_AGI 127.0.0.1:{port}")
        states = running.app.state.runtime.agent_states
        await until(lambda: "support" in states.queues(), what="the queues")
        bridge = await ami(pbx_kit, "kit-bridge", 0, "bridge", "bridge-secret")
        carrier = await ami(pbx_kit, "kit-sim", 1, "sim", "sim-secret")
        try:
            yield running, bridge, carrier
        finally:
            await carrier.stop()
            await bridge.stop()


@pytest.mark.realpbx
async def test_the_supervisor_turns_the_survey_on_and_a_real_call_is_scored(
    kit_survey_site, pbx_commands, browser
):
    ARTIFACTS.mkdir(exist_ok=True)
    site, bridge, carrier = kit_survey_site
    page = await signed_in(site.origin, browser, "lin", "/supervisor/queues")
    await expect(page.locator("#queue-support")).to_contain_text("满意度评价 Satisfaction survey")
    await page.check("#support-survey")
    await page.click("#queue-support button[type=submit]")
    await expect(page.locator("#support-survey")).to_be_checked()
    await expect(page.locator("#senior-survey")).not_to_be_checked()
    await page.locator("#queue-support").scroll_into_view_if_needed()
    await page.screenshot(path=ARTIFACTS / "survey_queue_settings.png")
    with site.sessions()() as session:
        assert session.get(QueueSetting, "support").survey

    for agent in ("1001", "1002"):
        await kit(pbx_commands, "agent", agent, "--talk", "2")
    uniqueid = await call_in(pbx_commands, bridge, "survey-cust-b")
    await until(lambda: ran(bridge.heard, uniqueid, "Read", ask_prompt()) == 1, timeout=60,
                what="the survey question")  # fmt: skip
    await press(carrier, "survey-cust-b", "4")
    call = await logged_call(site.origin, number=ZHANG_SAN)
    assert call["survey_score"] == 4
    await page.goto(f"{site.origin}/supervisor/calls/{call['id']}")
    await expect(page.locator("#survey-score")).to_contain_text("4 / 5")
    await page.screenshot(path=ARTIFACTS / "survey_call_page_real.png")
