"""The scheduler's and the admin's campaign pages in a real browser (Debian's Chromium through
Playwright), against the app under uvicorn and the AMI simulator answering each Originate with
an outcome of the recorded traces (answered, busy, no answer, congestion)."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import wave
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from sqlalchemy import select
from test_pops import AMI_SECRET, CHEAP_ARGON2, PASSWORD, Site, hashed, seed, served

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.campaigns import store as store
from crm_bridge.db.models import (
    AuditEntry,
    Call,
    Campaign,
    CampaignTarget,
    Customer,
    CustomerOptOut,
    CustomerPhone,
    DialAttempt,
    Purchase,
    User,
    VisitRecord,
)
from crm_bridge.settings import Settings
from telephony.simulator import AmiSimulator

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT_MS = 15_000
CSRF_DATA_RE = re.compile(r'data-csrf="([^"]+)"')
OUTCOMES = {
    "13900000001": "answered",
    "13900000002": "busy",
    "13900000003": "no_answer",
    "13900000004": "congestion",
}


def campaign_greetings(data_dir: Path) -> list[Path]:
    """The greetings folder's campaign uploads (the survey's prompts are kept there too)."""
    return [p for p in (data_dir / "greetings").iterdir() if not p.name.startswith("survey-")]


def outcome_by_number(headers: Mapping[str, str]) -> str:
    number = headers.get("Channel", "").removeprefix("PJSIP/").split("@")[0]
    return OUTCOMES.get(number, "answered")


def add_people(site: Site) -> None:
    """Four customers answering with the four outcomes, one without consent, one whose number
    the admin puts on the do-not-call list; and an admin."""
    with site.sessions().begin() as session:
        session.add(User(username="root", password_hash=hashed(PASSWORD), role="admin"))
        for i, number in enumerate(OUTCOMES, start=1):
            session.add(
                Customer(
                    card_no=f"K{i:03d}",
                    name=f"客户{i}",
                    phones=[CustomerPhone(number_e164=f"+86{number}")],
                )
            )
        session.add(
            Customer(
                card_no="K005",
                name="不同意",
                consent_to_calls=False,
                phones=[CustomerPhone(number_e164="+8613900000005")],
            )
        )
        session.add(
            Customer(
                card_no="K006", name="免打扰", phones=[CustomerPhone(number_e164="+8613900000006")]
            )
        )


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with AmiSimulator(
        username="bridge",
        secret=AMI_SECRET,
        originate_outcome=outcome_by_number,
        originate_speed=20,
    ) as sim:
        settings = Settings(
            data_dir=tmp_path,
            ami_host="127.0.0.1",
            ami_port=sim.port,
            ami_username="bridge",
            ami_secret=AMI_SECRET,
            api_token="test-token-0123456789",
            secret_key="a-test-secret-key-of-some-length",
            campaign_calls_per_second=10,
            campaign_max_concurrent=2,
        )
        seed(settings.database_url)
        app = create_app(settings)
        async with served(app) as address:
            running = Site(sim, app, address, settings)
            add_people(running)
            yield running


async def signed_in(site: Site, browser: Browser, username: str, path: str) -> Page:
    page = await browser.new_page(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}{path}")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.origin}{path}")
    return page


def greeting_wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 8000)
    return path


async def no_horizontal_scroll(page: Page) -> bool:
    return await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )


async def test_a_scheduler_previews_runs_and_exports_a_campaign(site, browser, tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    admin = await signed_in(site, browser, "root", "/admin/do-not-call")
    await admin.fill("#dnc-number", "139 0000 0006")
    await admin.fill("#dnc-note", "客户要求")
    await admin.click("#add-number")
    await expect(admin.locator("#numbers")).to_contain_text("139****0006")
    await admin.screenshot(path=ARTIFACTS / "campaign_do_not_call.png")

    page = await signed_in(site, browser, "zhou", "/campaigns")
    await page.fill("#c-name", "十一月回访")
    await page.select_option("#c-kind", "return_visit")
    await page.select_option("#c-mode", "message")
    await page.check("input[name=rule_uploaded]")
    await page.fill("textarea[name=uploaded]", "K001\nK002\nK003\nK004\nK005\n13900000006")
    await page.fill("input[name=start]", "00:00")
    await page.fill("input[name=end]", "00:00")
    await page.fill("input[name=max_attempts]", "1")
    await page.set_input_files("#c-greeting", greeting_wav(tmp_path / "hello.wav"))
    await page.click("#create")
    await page.wait_for_url(f"{site.origin}/campaigns/*")

    await expect(page.locator("#preview-summary")).to_contain_text("6")
    await expect(page.locator("#included")).to_have_text("4")
    await expect(page.locator("#reasons [data-reason=no_consent]")).to_contain_text("1")
    await expect(page.locator("#reasons [data-reason=do_not_call]")).to_contain_text("1")
    await expect(page.locator("#left-out")).to_contain_text("不同意")
    assert await no_horizontal_scroll(page)
    await page.screenshot(path=ARTIFACTS / "campaign_preview.png", full_page=True)

    await page.click("#action-start")
    await expect(page.locator("#status")).to_contain_text("已完成", timeout=30_000)
    await expect(page.locator("#finished")).to_have_text("6")
    await expect(page.locator("#action-pause")).to_be_hidden()
    for outcome in ("answered", "busy", "no_answer", "congestion"):
        await expect(page.locator(f"#outcomes [data-outcome={outcome}]")).to_have_text("1")
    await page.screenshot(path=ARTIFACTS / "campaign_done.png", full_page=True)

    originates = site.simulator.actions_named("Originate")
    assert sorted(a["Channel"] for a in originates) == [f"PJSIP/{n}@carrier" for n in OUTCOMES]
    greetings = {a.get("Variable", "") for a in originates}
    assert all(v.startswith("CAMPAIGN=") for v in greetings)  # first Variable header
    raw = b"".join(site.simulator.received_raw)
    assert b"Variable: CC_GREETING=callbridge/greetings/" in raw
    stored = campaign_greetings(site.settings.data_dir)
    assert len(stored) == 1 and stored[0].suffix == ".wav" and stored[0].name != "hello.wav"

    async with page.expect_download() as download_info:
        await page.click("text=导出 CSV")
    download = await download_info.value
    rows = list(csv.reader(io.StringIO((await download.path()).read_text("utf-8-sig"))))
    by_card = {row[0]: row for row in rows[1:]}
    assert by_card["K001"][2:5] == ["done", "1", "answered"]
    assert by_card["K002"][4] == "busy" and by_card["K005"][2] == "skipped"
    with site.sessions()() as session:
        assert session.query(AuditEntry).filter_by(action="export", username="zhou").count() == 1


async def test_a_typo_is_said_beside_its_field_and_nothing_typed_is_lost(site, browser, tmp_path):
    """A month 13 in the blackout dates: the error in zh-CN and English beside that field,
    every other field as typed (name, kind, mode, rules, hours), the uploaded greeting kept
    for the next save; corrected, the campaign is saved as it was meant."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, "zhou", "/campaigns")
    await page.fill("#c-name", "春节祝福")
    await page.select_option("#c-kind", "birthday")
    await page.select_option("#c-mode", "agent")
    await page.check("input[name=rule_birthday]")
    await page.check("input[name=rule_top_spenders]")
    await page.fill("input[name=top_n]", "5")
    await page.fill("input[name=start]", "10:30")
    await page.fill("#c-blackout", "2026-10-01, 2026-13-01")
    await page.set_input_files("#c-greeting", greeting_wav(tmp_path / "spring.wav"))
    await page.click("#create")

    error = page.locator("#err-blackout")
    await expect(error).to_contain_text("“2026-13-01”")
    await expect(error).to_contain_text("YYYY-MM-DD")  # English beside the Chinese
    await expect(page.locator("#c-blackout")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#c-name")).to_have_value("春节祝福")
    await expect(page.locator("#c-kind")).to_have_value("birthday")
    await expect(page.locator("#c-mode")).to_have_value("agent")
    await expect(page.locator("input[name=rule_birthday]")).to_be_checked()
    await expect(page.locator("input[name=rule_top_spenders]")).to_be_checked()
    await expect(page.locator("input[name=rule_uploaded]")).not_to_be_checked()
    await expect(page.locator("input[name=top_n]")).to_have_value("5")
    await expect(page.locator("input[name=start]")).to_have_value("10:30")
    await expect(page.locator("#c-blackout")).to_have_value("2026-10-01, 2026-13-01")
    await expect(page.locator("#greeting-kept")).to_contain_text("1.0")
    await page.screenshot(path=ARTIFACTS / "campaign_form_error.png", full_page=True)
    with site.sessions()() as session:
        assert session.query(Campaign).count() == 0

    await page.fill("#c-blackout", "2026-10-01, 2026-12-01")
    await page.click("#create")  # no new upload: the kept greeting is used
    await page.wait_for_url(f"{site.origin}/campaigns/*")
    with site.sessions()() as session:
        campaign = session.query(Campaign).one()
    assert (campaign.name, campaign.kind, campaign.mode) == ("春节祝福", "birthday", "agent")
    assert [rule["kind"] for rule in campaign.rules] == ["birthday", "top_spenders"]
    assert campaign.policy["blackout_dates"] == ["2026-10-01", "2026-12-01"]
    assert campaign.policy["start"] == "10:30:00"
    kept = site.settings.data_dir / "greetings" / campaign.greeting_file
    assert kept.is_file() and kept.name != "spring.wav"


async def test_a_kept_greeting_must_be_one_the_service_stored(site):
    """The hidden field that carries a greeting on names only a file the service stored in
    its greetings folder: any other name is ignored, never followed out of the folder."""
    secret = site.settings.data_dir / "secret.wav"
    greeting_wav(secret)
    async with site.signed_in("zhou") as client:
        page = (await client.get("/campaigns")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token is not None
        form = {"csrf_token": token.group(1), "name": "试", "kind": "return_visit",
                "mode": "message", "rule_birthday": "on", "start": "09:00", "end": "20:00",
                "weekdays": "0", "max_attempts": "3", "kept_greeting": "../secret.wav"}  # fmt: skip
        created = await client.post("/campaigns", data=form)
        assert created.status_code == 303
    with site.sessions()() as session:
        assert session.query(Campaign).one().greeting_file is None


async def test_campaign_pages_are_for_schedulers_and_admins(site):
    async with site.signed_in("wang") as agent:
        assert (await agent.get("/campaigns")).status_code == 403
        assert (await agent.get("/admin/do-not-call")).status_code == 403
    async with site.signed_in("zhou") as scheduler:
        assert (await scheduler.get("/campaigns")).status_code == 200
        assert (await scheduler.get("/admin/do-not-call")).status_code == 403
        page = await scheduler.get("/campaigns")
        assert "csrf_token" in page.text
        forged = await scheduler.post("/campaigns", data={"name": "x"})
        assert forged.status_code == 403  # no CSRF token
    async with httpx.AsyncClient(base_url=site.origin) as anonymous:
        for path in ("/campaigns", "/campaigns/1", "/campaigns/1/progress", "/admin/do-not-call"):
            assert (await anonymous.get(path)).status_code == 401


async def test_a_bad_answering_machine_policy_is_refused_and_changes_nothing(site):
    form = {
        "name": "坏设置", "kind": "birthday", "mode": "message", "rule_uploaded": "on",
        "uploaded": "K001", "start": "09:00", "end": "20:00", "weekdays": ["0", "1"],
    }  # fmt: skip
    with site.sessions().begin() as session:
        draft = Campaign(name="草稿", kind="birthday", mode="message", status="draft",
                         rules=[{"kind": "uploaded", "entries": ["K001"]}],
                         policy={"on_machine": "message"})  # fmt: skip
        session.add(draft)
        session.flush()
        draft_id = draft.id
    async with site.signed_in("zhou") as scheduler:
        listed = (await scheduler.get("/campaigns")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', listed)[1]
        refusals = (
            ("on_machine", "voicemail", 'id="err-on_machine" role="alert">“voicemail”: 请从列表中'),
            ("retry_machine", "-1", "<p>填写有误</p>"),  # no field of its own; a zh page's half
        )
        for field, bad, said in refusals:
            data = {**form, "csrf_token": token, field: bad}
            created = await scheduler.post("/campaigns", data=data)
            assert created.status_code == 400 and said in created.text
            edited = await scheduler.post(f"/campaigns/{draft_id}", data=data)
            assert edited.status_code == 400 and said in edited.text
    with site.sessions()() as session:
        assert session.scalars(select(Campaign.name)).all() == ["草稿"]
        assert session.get(Campaign, draft_id).policy == {"on_machine": "message"}


async def test_an_agent_saves_the_return_visit_form_and_an_opt_out(site):
    with site.sessions().begin() as session:
        customer = session.query(Customer).filter_by(card_no="K001").one()
        campaign = Campaign(name="回访", kind="return_visit", mode="agent", status="running")
        session.add(campaign)
        session.flush()
        session.add(
            DialAttempt(
                campaign_id=campaign.id,
                customer_id=customer.id,
                attempt_no=1,
                number_e164="+8613900000001",
                action_id="cmp-a",
                channel_id="L-1",
                outcome="answered",
            )
        )
        session.add(
            Call(
                linkedid="L-1",
                server="default",
                direction="outbound",
                agent="1001",
                customer_id=customer.id,
                campaign=str(campaign.id),
            )
        )
        session.add(Call(linkedid="L-2", server="default", direction="outbound", agent="1002"))
        customer_id, campaign_id = customer.id, campaign.id
    async with site.signed_in("wang") as agent:
        token = CSRF_DATA_RE.search((await agent.get("/agent")).text).group(1)
        headers = {"X-CSRF-Token": token}
        call = (await agent.get("/me/campaign-calls/L-1")).json()
        assert call["campaign_id"] == campaign_id and call["customer_id"] == customer_id
        assert (await agent.get("/me/campaign-calls/L-2")).status_code == 404  # not theirs
        form = {"place": "家中", "opinions": "安装很快", "suggestions": "希望周末上门"}
        assert (await agent.post("/me/campaign-calls/L-1/visit", json=form)).status_code == 403
        saved = await agent.post("/me/campaign-calls/L-1/visit", json=form, headers=headers)
        assert saved.status_code == 200
        refused = await agent.post("/me/campaign-calls/L-2/visit", json=form, headers=headers)
        assert refused.status_code == 404
        opted = await agent.post(
            "/me/opt-out",
            json={"customer_id": customer_id, "linkedid": "L-1", "note": "通话中要求"},
            headers=headers,
        )
        assert opted.status_code == 200
    with site.sessions()() as session:
        visit = session.query(VisitRecord).one()
        assert (visit.customer_id, visit.place, visit.visited_by) == (customer_id, "家中", "wang")
        assert visit.call_id is not None and visit.suggestions == "希望周末上门"
        assert (
            session.query(CustomerOptOut).filter_by(customer_id=customer_id).one().source == "call"
        )


async def test_an_agent_previews_the_next_customer_and_clicks_to_dial(site, browser):
    with site.sessions().begin() as session:
        campaign = Campaign(
            name="VIP 回访",
            kind="return_visit",
            mode="preview",
            policy={"start": "00:00", "end": "00:00"},
            rules=[{"kind": "uploaded", "entries": ["K001", "K005"]}],
        )
        session.add(campaign)
        session.flush()
        store.start_campaign(session, campaign.id, datetime.now(UTC), site.settings.zone, "CN")
        campaign_id = campaign.id
    page = await signed_in(site, browser, "wang", "/me/campaigns")
    row = page.locator("#preview-calls section")
    await expect(row).to_contain_text("客户1")  # K005 has no consent: never offered
    await expect(row).to_contain_text("139****0001")
    await page.screenshot(path=ARTIFACTS / "campaign_preview_agent.png")
    await page.click("button.dial")
    await expect(page.locator("p.done")).to_contain_text("正在呼叫")
    (sent,) = site.simulator.actions_named("Originate")
    assert sent["Channel"] == "PJSIP/1001" and sent["Exten"] == "913900000001"
    assert sent["Context"] == "internal"
    raw = b"".join(site.simulator.received_raw)
    assert f"Variable: CAMPAIGN={campaign_id}\r\n".encode() in raw
    # the call ends and reaches the call log; the runner settles the attempt from it
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while datetime.now(UTC) < deadline:
        with site.sessions()() as session:
            done = store.progress(session, campaign_id)
        if done.by_outcome["answered"]:
            break
        await asyncio.sleep(0.2)
    assert done.by_outcome["answered"] == 1 and done.by_state["done"] == 1
    with site.sessions()() as session:
        call = session.query(Call).filter_by(campaign=str(campaign_id)).one()
        assert call.customer_id is not None
    await page.reload()
    await expect(row).to_contain_text("现在没有可呼叫的客户")


async def test_the_preview_says_who_is_left_out_and_a_draft_has_no_stop(site, browser, tmp_path):
    """A promotion pasted with card nos. and numbers: the entries that match no customer are
    listed with the reason, a minor is left out (a child whose guardian's consent the admin
    records is called); the draft offers Start, never Stop; the start calls whom it showed."""
    ARTIFACTS.mkdir(exist_ok=True)
    with site.sessions().begin() as session:
        session.add_all(
            [
                Customer(card_no="K007", name="小明", birthday=date.today().replace(year=2016),
                         phones=[CustomerPhone(number_e164="+8613900000007")]),
                Customer(card_no="K008", name="小红", tags=["儿童"],
                         phones=[CustomerPhone(number_e164="+8613900000008")]),
            ]
        )  # fmt: skip
    admin = await signed_in(site, browser, "root", "/admin/do-not-call")
    await admin.fill("#guardian-card", "K404")
    await admin.fill("#guardian-name", "母亲 王芳")
    await admin.click("#add-guardian-consent")
    await expect(admin.locator("#guardian-card-error")).to_have_text("没有这个卡号")  # zh-CN page
    await expect(admin.locator("#guardian-name")).to_have_value("母亲 王芳")  # kept as typed
    await admin.fill("#guardian-card", "K008")
    await admin.click("#add-guardian-consent")
    await expect(admin.locator("#guardian-consents")).to_contain_text("母亲 王芳")
    await expect(admin.locator("#guardian-consents")).to_contain_text("root")
    await admin.screenshot(path=ARTIFACTS / "campaign_guardian_consent.png", full_page=True)

    page = await signed_in(site, browser, "zhou", "/campaigns")
    await page.fill("#c-name", "双十二促销")
    await page.select_option("#c-kind", "promotion")
    await page.select_option("#c-mode", "preview")
    await page.check("input[name=rule_uploaded]")
    await page.fill("textarea[name=uploaded]", "K001\nK007\nK008\nK999\n139 1234 5678")
    await page.fill("input[name=start]", "00:00")
    await page.fill("input[name=end]", "00:00")
    await page.click("#create")
    await page.wait_for_url(f"{site.origin}/campaigns/*")

    await expect(page.locator("#call-kind")).to_contain_text("营销活动")
    unmatched = page.locator("#unmatched")
    await expect(unmatched.locator("[data-reason=unknown_card]")).to_contain_text("K999")
    await expect(unmatched.locator("[data-reason=unknown_number]")).to_contain_text(
        "139 1234 5678"
    )
    await expect(unmatched).to_contain_text("No customer has this number")
    await expect(page.locator("#reasons [data-reason=minor]")).to_contain_text("1")
    await expect(page.locator("#left-out")).to_contain_text("小明")
    await expect(page.locator("#left-out")).to_contain_text("Under 18")
    await expect(page.locator("#included")).to_have_text("2")  # 客户1, and 小红 with consent
    await expect(page.locator("#action-start")).to_be_visible()
    await expect(page.locator("#action-stop")).to_have_count(0)
    assert await no_horizontal_scroll(page)
    await page.screenshot(path=ARTIFACTS / "campaign_preview_left_out.png", full_page=True)

    campaign_id = int(page.url.rsplit("/", 1)[1])
    async with site.signed_in("zhou") as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', (await client.get(page.url)).text)
        stop = {"csrf_token": token[1], "action": "stop"}
        refused = await client.post(f"/campaigns/{campaign_id}/action", data=stop)
        assert refused.status_code == 400 and "草稿的活动不能停止" in refused.text
    await page.click("#action-start")
    await expect(page.locator("#action-stop")).to_be_visible()
    with site.sessions()() as session:
        called = session.scalars(
            select(Customer.card_no)
            .join(CampaignTarget, CampaignTarget.customer_id == Customer.id)
            .where(CampaignTarget.campaign_id == campaign_id)
        ).all()
        assert sorted(called) == ["K001", "K008"]
        consent = session.query(AuditEntry).filter_by(action="guardian_consent").one()
        assert consent.username == "root" and consent.subject_type == "customer"


async def test_the_scheduler_plays_the_uploaded_greeting_back(site, browser, tmp_path):
    """The page plays the greeting as it was stored (8 kHz WAV), from the campaign's id; no
    one else gets it, and no name leads out of the greetings folder."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = await signed_in(site, browser, "zhou", "/campaigns")
    await page.fill("#c-name", "问候")
    await page.check("input[name=rule_uploaded]")
    await page.fill("textarea[name=uploaded]", "K001")
    await page.set_input_files("#c-greeting", greeting_wav(tmp_path / "hello.wav"))
    await page.click("#create")
    await page.wait_for_url(f"{site.origin}/campaigns/*")
    player = page.locator("#greeting-player audio")
    await expect(player).to_be_visible()
    seconds = await player.evaluate(
        """audio => new Promise((done, failed) => {
             if (audio.readyState >= 1) return done(audio.duration);
             audio.addEventListener("loadedmetadata", () => done(audio.duration));
             audio.addEventListener("error", () => failed(new Error("not played")));
           })"""
    )
    assert abs(seconds - 1.0) < 0.05
    await page.screenshot(path=ARTIFACTS / "campaign_greeting_player.png", full_page=True)

    campaign_id = int(page.url.rsplit("/", 1)[1])
    url = f"/campaigns/{campaign_id}/greeting"
    (stored,) = campaign_greetings(site.settings.data_dir)
    async with site.signed_in("zhou") as scheduler:
        served_back = await scheduler.get(url)
        assert served_back.status_code == 200 and served_back.content == stored.read_bytes()
        assert served_back.headers["content-type"] == "audio/wav"
    async with site.signed_in("wang") as agent:
        assert (await agent.get(url)).status_code == 403
    greeting_wav(site.settings.data_dir / "secret.wav")
    with site.sessions().begin() as session:
        session.get(Campaign, campaign_id).greeting_file = "../secret.wav"
    async with site.signed_in("zhou") as scheduler:
        assert (await scheduler.get(url)).status_code == 404
        assert (await scheduler.get("/campaigns/999/greeting")).status_code == 404
    async with httpx.AsyncClient(base_url=site.origin) as anonymous:
        assert (await anonymous.get(url)).status_code == 401


async def test_the_preview_dialer_stays_on_the_customer_until_the_call_is_settled(site, browser):
    """The agent sees the customer's card and history; once they dialled, the page keeps that
    customer (and offers no other) until the call's outcome is recorded, then moves on."""
    ARTIFACTS.mkdir(exist_ok=True)
    with site.sessions().begin() as session:
        first = session.query(Customer).filter_by(card_no="K001").one()
        session.add(Purchase(customer_id=first.id, purchased_on=date(2026, 11, 1),
                             department="家电", amount=3999, items="洗衣机"))  # fmt: skip
        visited = datetime(2026, 11, 5, 2, tzinfo=UTC)
        session.add(VisitRecord(customer_id=first.id, visited_at=visited, channel="phone",
                                opinions="安装满意"))  # fmt: skip
        campaign = Campaign(name="VIP 回访", kind="return_visit", mode="preview",
                            policy={"start": "00:00", "end": "00:00"},
                            rules=[{"kind": "uploaded", "entries": ["K001", "K002"]}])  # fmt: skip
        session.add(campaign)
        session.flush()
        store.start_campaign(session, campaign.id, datetime.now(UTC), site.settings.zone, "CN")
        campaign_id = campaign.id
    page = await signed_in(site, browser, "wang", "/me/campaigns")
    shown = page.locator(f"#preview-calls section[data-campaign='{campaign_id}']")
    await expect(shown.locator(".customer-name")).to_contain_text("客户1")
    await expect(shown.locator(".purchases")).to_contain_text("洗衣机")
    await expect(shown.locator(".visits")).to_contain_text("安装满意")
    await expect(shown.locator("button.dial")).to_be_visible()

    # the agent's call to 客户1 is placed (its attempt committed, as the Dial button does)
    with site.sessions()() as session:
        target_id = session.scalar(
            select(CampaignTarget.id).where(CampaignTarget.customer_id == first.id)
        )
        other_target = session.scalar(
            select(CampaignTarget.id).where(CampaignTarget.customer_id != first.id)
        )
    ticket = store.claim_attempt(site.sessions(), target_id, datetime.now(UTC),
                                 site.settings.timezone, placed_by="wang")  # fmt: skip
    assert ticket is not None
    await page.reload()
    await expect(shown.locator(".call-state")).to_contain_text("until the call is settled")
    await expect(shown.locator(".customer-name")).to_contain_text("客户1")  # not 客户2
    await expect(shown.locator("button.dial")).to_have_count(0)
    await page.screenshot(path=ARTIFACTS / "campaign_preview_dialer_held.png", full_page=True)
    async with site.signed_in("wang") as agent:
        listed = (await agent.get("/me/campaigns")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', listed)
        another = await agent.post(f"/me/campaigns/{campaign_id}/targets/{other_target}/dial",
                                   data={"csrf_token": token[1]})  # fmt: skip
        assert another.status_code == 409
    assert not site.simulator.actions_named("Originate")

    # settled: the page, looking again by itself, moves on to the next customer
    store.record_outcome(site.sessions(), ticket.attempt_id, "answered", datetime.now(UTC),
                         site.settings.timezone)  # fmt: skip
    await expect(shown.locator(".customer-name")).to_contain_text("客户2", timeout=10_000)
    await expect(shown.locator(".call-state")).to_have_count(0)
    await expect(shown.locator("button.dial")).to_be_visible()
    await page.screenshot(path=ARTIFACTS / "campaign_preview_dialer_next.png", full_page=True)
