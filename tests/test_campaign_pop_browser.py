"""The pop of an agent-mode campaign call in a real browser (Debian's Chromium through
Playwright): the campaign runner dials, the AMI simulator answers the Originate, the customer is
put through to the queue and agent 1001 is rung; 1001's page shows the campaign, the customer's
card and the return-visit form, which becomes a visit record; 1002's page gets nothing.

No recording holds a campaign call put through to the queue (``CC_MODE=agent`` in
``dialplans/extensions_callbridge.conf``), so :func:`agent_mode_trace` writes one: the recorded
answered campaign call ``d_outbound_return_visit_answered`` with the queue's events for agent
1001 added right after the Originate's answer, as ``app_queue`` reports them. The simulator
replays it for every answered Originate.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, Route, expect
from test_pops import AMI_SECRET, CHEAP_ARGON2, PASSWORD, Site, seed, served

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.campaigns import store as store
from crm_bridge.db.models import Campaign, Customer, CustomerOptOut, CustomerPhone, VisitRecord
from crm_bridge.settings import Settings
from telephony.simulator import DEFAULT_TRACES_DIR, ORIGINATE_TRACES, AmiSimulator
from telephony.trace_files import read_frames

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WAIT_MS = 15_000
BROWSER_ZONE = "America/New_York"
"""The agent's browser runs in another zone than the center (Asia/Shanghai)."""
CUSTOMER_NUMBER = "+8613900000001"
AGENT_INTERFACE = "PJSIP/1001"
AGENT_CHANNEL = "PJSIP/1001-000000a1"
AGENT_UNIQUEID = "1795346759.999"
"""The agent's phone channel: an id of the recorded call's form that it does not use."""


def _frame_bytes(frame: dict[str, str]) -> bytes:
    return b"".join(f"{key}: {value}\r\n".encode() for key, value in frame.items()) + b"\r\n"


def agent_mode_trace(folder: Path) -> Path:
    """A traces folder whose answered Originate puts the customer through to agent 1001."""
    recorded = DEFAULT_TRACES_DIR / f"{ORIGINATE_TRACES['answered']}.ami"
    _, frames = read_frames(recorded)
    events = [frame for frame in frames if "Event" in frame]
    answer = next(i for i, e in enumerate(events) if e["Event"] == "OriginateResponse")
    customer = next(e for e in events if e["Event"] == "Newchannel")
    at = events[answer]["Timestamp"]
    caller = {
        "Channel": customer["Channel"],
        "Uniqueid": customer["Uniqueid"],
        "Linkedid": customer["Linkedid"],
        "Queue": "support",
    }
    agent = {
        "Interface": AGENT_INTERFACE,
        "MemberName": AGENT_INTERFACE,
        "DestChannel": AGENT_CHANNEL,
        "DestUniqueid": AGENT_UNIQUEID,
        "DestLinkedid": customer["Linkedid"],
    }
    queue_events = [
        {"Event": "QueueCallerJoin", "Timestamp": at, **caller, "Position": "1", "Count": "1"},
        {"Event": "AgentCalled", "Timestamp": at, **caller, **agent},
        {"Event": "AgentConnect", "Timestamp": at, **caller, **agent, "RingTime": "2"},
    ]
    events[answer + 1 : answer + 1] = queue_events
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / recorded.name
    path.write_bytes(b"".join(_frame_bytes(e) for e in events))
    return folder


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    traces = agent_mode_trace(tmp_path / "traces")
    async with AmiSimulator(username="bridge", secret=AMI_SECRET, traces_dir=traces) as sim:
        settings = Settings(
            data_dir=tmp_path,
            ami_host="127.0.0.1",
            ami_port=sim.port,
            ami_username="bridge",
            ami_secret=AMI_SECRET,
            api_token="test-token-0123456789",
            secret_key="a-test-secret-key-of-some-length",
        )
        seed(settings.database_url)
        app = create_app(settings)
        async with served(app) as address:
            running = Site(sim, app, address, settings)
            assert await app.state.runtime.bridge.wait_connected(timeout=WAIT_MS / 1000)
            with running.sessions().begin() as session:
                session.add(
                    Customer(
                        card_no="K001",
                        name="客户一",
                        vip_level="银卡",
                        phones=[CustomerPhone(number_e164=CUSTOMER_NUMBER, kind="mobile")],
                    )
                )
            yield running


def start_agent_campaign(site: Site) -> int:
    with site.sessions().begin() as session:
        campaign = Campaign(
            name="十一月空调回访",
            kind="return_visit",
            mode="agent",
            policy={"start": "00:00", "end": "00:00"},
            rules=[{"kind": "uploaded", "entries": ["K001"]}],
        )
        session.add(campaign)
        session.flush()
        store.start_campaign(session, campaign.id, datetime.now(UTC), site.settings.zone, "CN")
        return campaign.id


async def agent_page(
    site: Site, browser: Browser, username: str, timezone_id: str | None = None
) -> Page:
    page = await browser.new_page(
        viewport={"width": 1366, "height": 768}, locale="zh-CN", timezone_id=timezone_id
    )
    page.set_default_timeout(WAIT_MS)
    await page.goto(f"{site.origin}/agent")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{site.origin}/agent")
    await expect(page.locator("#agent-app")).to_have_attribute("data-socket", "open")
    return page


async def test_the_agent_saves_the_return_visit_from_a_campaign_pop(site, browser):
    ARTIFACTS.mkdir(exist_ok=True)
    wang = await agent_page(site, browser, "wang", timezone_id=BROWSER_ZONE)  # not the center's
    li = await agent_page(site, browser, "li")
    campaign_id = start_agent_campaign(site)

    card = wang.locator("article.card", has=wang.locator(".campaign"))
    await expect(card).to_have_count(1)
    await expect(card.locator(".campaign-name")).to_have_text("十一月空调回访")
    await expect(card.locator(".campaign")).to_contain_text("回访")
    await expect(card).to_have_attribute("data-campaign-id", str(campaign_id))
    await expect(card.locator(".customer-name")).to_contain_text("客户一")
    await expect(card).to_contain_text("银卡")
    form = card.locator("form.visit-form")
    when = form.locator("input[name=visited_at]")
    shown = datetime.fromisoformat(await when.input_value()).replace(tzinfo=site.settings.zone)
    assert abs(shown - datetime.now(UTC)) < timedelta(minutes=2)  # the center's clock
    linkedid = await card.get_attribute("data-linkedid")

    await form.locator("input[name=place]").fill("客户家中")
    await form.locator("textarea[name=opinions]").fill("空调安装很快，师傅很专业")
    await form.locator("textarea[name=suggestions]").fill("希望周末也能上门")

    async def network_down(route: Route) -> None:
        await route.abort()

    await wang.route("**/visit", network_down)  # the save fails: the words stay
    await form.locator("button[type=submit]").click()
    await expect(form.locator(".form-error")).to_contain_text("网络错误")
    await expect(form.locator("textarea[name=opinions]")).to_have_value("空调安装很快，师傅很专业")
    await wang.unroute("**/visit", network_down)

    await form.locator("button[type=submit]").click()
    await expect(form.locator(".saved")).to_contain_text("回访记录已保存")
    await expect(form.locator(".form-error")).to_be_hidden()
    await card.scroll_into_view_if_needed()
    await wang.screenshot(path=ARTIFACTS / "pop_campaign_visit.png")
    assert await wang.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )

    with site.sessions()() as session:
        customer = session.query(Customer).filter_by(card_no="K001").one()
        visit = session.query(VisitRecord).filter_by(customer_id=customer.id).one()
        assert (visit.place, visit.opinions, visit.suggestions, visit.visited_by) == (
            "客户家中",
            "空调安装很快，师傅很专业",
            "希望周末也能上门",
            "wang",
        )
        assert visit.channel == "phone"
        assert visit.visited_at == shown  # the time as the form showed it, in the center's zone

    wang.once("dialog", lambda dialog: dialog.dismiss())
    await card.locator("button.opt-out").click()  # the agent thinks again: nothing is recorded
    await expect(card.locator("button.opt-out")).to_be_enabled()
    wang.once("dialog", lambda dialog: dialog.accept())
    await card.locator("button.opt-out").click()
    await expect(card.locator(".opt-out-done")).to_contain_text("已记录退订")
    with site.sessions()() as session:
        opt_out = session.query(CustomerOptOut).filter_by(customer_id=customer.id).one()
        assert (opt_out.source, opt_out.recorded_by) == ("call", "wang")

    await expect(card.locator(".state")).to_contain_text("已结束", timeout=WAIT_MS)
    await expect(li.locator("article.card")).to_have_count(0)  # 1002 was never rung
    await expect(li.locator("#no-calls")).to_be_visible()
    async with site.signed_in("li") as other:
        assert (await other.get(f"/me/campaign-calls/{linkedid}")).status_code == 404
