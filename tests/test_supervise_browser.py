"""Listen, whisper, barge in Chromium, on the PBX kit's real Asterisk.

Supervisor chen (phone 1002, queue ``support``) listens to a real call of agent wang (1001)
from the wallboard's button, is refused a second one on the live call page with the reason
shown, and sees it on the supervise page; a supervisor of another queue gets no buttons; the
admin sets a supervisor's queues on the users page (an unknown queue is refused beside the
field). Screenshots go to ``test-artifacts/supervise_*.png``.
"""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page, expect
from test_agent_browser import ARTIFACTS
from test_agent_states_browser import signed_in
from test_pops import PASSWORD, hashed
from test_supervise_realpbx import (  # noqa: F401  (the kit site's fixtures)
    answered_by_1001,
    channel_of,
    hang_up_the_customer,
    off_loop,
    site,
    spies,
    until,
)

from crm_bridge.db.models import User

pytestmark = pytest.mark.realpbx


async def test_listen_from_the_wallboard_and_refused_on_the_live_page(
    site, browser, kit_bridge  # noqa: F811
):
    ARTIFACTS.mkdir(exist_ok=True)
    service = site.app.state.runtime.supervise
    await off_loop("agent", "1002", "--behaviour", "answer", "--ring", "1", "--talk", "120")
    board = await signed_in(site, browser, "chen", "/supervisor/wallboard")
    other = await signed_in(site, browser, "gao", "/supervisor/wallboard")
    async with site.signed_in("chen") as chen:
        call = await answered_by_1001(site, chen)
    agent_channel = await channel_of("PJSIP/1001-")
    row = board.locator("#wb-agents tr[data-agent='1001']")
    await expect(row.locator("button[data-supervise-mode]")).to_have_count(3)
    customer = other.locator("#wb-agents tr[data-agent='1001'] .wb-customer")
    await expect(customer).to_have_text("张三")
    await expect(other.locator("button[data-supervise-mode]")).to_have_count(0)
    screen = await signed_in(site, browser, "chen", "/wallboard/screen")
    await expect(screen.locator("#wb-agents tr[data-agent='1001']")).to_have_count(1)
    await expect(screen.locator("button[data-supervise-mode]")).to_have_count(0)

    await row.locator("button[data-supervise-mode=listen]").click()
    status = board.locator("#supervise-status")
    await expect(status).to_contain_text("正在呼叫您的分机 1002")
    await expect(status).to_have_attribute("data-state", "ringing")
    await until(spies, "a ChanSpy")
    ((_spy, context, exten, _p, _s, app, data, *_),) = await spies()
    assert (context, exten, app, data) == ("callbridge-supervise", "listen", "ChanSpy",
                                           f"{agent_channel},qES")  # fmt: skip
    await board.screenshot(path=ARTIFACTS / "supervise_wallboard_listening.png", full_page=True)

    live = await open_live_page(site, browser, call["linkedid"])
    await live.locator("#live-supervise button[data-supervise-mode=barge]").click()
    live_status = live.locator("#supervise-status")
    await expect(live_status).to_contain_text("这通电话已有主管 chen 在监听")
    await expect(live_status).to_have_attribute("data-state", "refused")
    await live.screenshot(path=ARTIFACTS / "supervise_live_call_refused.png", full_page=True)
    assert len(await spies()) == 1

    page = await signed_in(site, browser, "chen", "/supervisor/supervise")
    await expect(page.locator("#sv-sessions tbody tr[data-session]")).to_have_count(1)
    await expect(page.locator("#sv-calls")).to_contain_text("监听 Listen · chen")
    await page.screenshot(path=ARTIFACTS / "supervise_page.png", full_page=True)

    await hang_up_the_customer(kit_bridge)
    await until(lambda: service.sessions == {}, "the listen ended with the call")
    await expect(row).to_have_count(1)
    await expect(row.locator("button[data-supervise-mode]")).to_have_count(0)


async def open_live_page(running, browser: Browser, linkedid: str) -> Page:
    page = await signed_in(running, browser, "chen", f"/supervisor/live/{linkedid}")
    await expect(page.locator("#live-supervise button[data-supervise-mode]")).to_have_count(3)
    return page


async def test_the_admin_sets_a_supervisors_queues(site, browser):  # noqa: F811
    ARTIFACTS.mkdir(exist_ok=True)
    with site.sessions().begin() as session:
        session.add(User(username="boss", password_hash=hashed(PASSWORD), role="admin",
                         extensions=[]))  # fmt: skip
        chen_id = session.query(User).filter_by(username="chen").one().id
    page = await signed_in(site, browser, "boss", "/admin/users")
    user_row = page.locator(f"#user-{chen_id}")
    await expect(user_row.locator(".supervised-queues")).to_have_text("support")
    await user_row.locator("summary").click()
    await page.fill(f"#supervised-queues-{chen_id}", "support sales")
    await user_row.locator("button[type=submit]", has_text="保存").click()
    refused = page.locator(f"#supervised-queues-{chen_id}-error")
    await expect(refused).to_have_text("没有这个队列：sales")  # the zh-CN page's half
    await expect(page.locator(f"#supervised-queues-{chen_id}")).to_have_value("support sales")
    await page.screenshot(path=ARTIFACTS / "supervise_admin_unknown_queue.png", full_page=True)
    with site.sessions()() as session:
        assert session.get(User, chen_id).supervised_queues == ["support"]  # nothing changed
    await page.fill(f"#supervised-queues-{chen_id}", "")
    await page.locator(f"#user-{chen_id} button[type=submit]", has_text="保存").click()
    await expect(page.locator(".done")).to_contain_text("已保存")
    await expect(page.locator(f"#user-{chen_id} .supervised-queues")).to_have_text("—")
    with site.sessions()() as session:
        assert session.get(User, chen_id).supervised_queues == []
    chen = await signed_in(site, browser, "chen", "/supervisor/supervise")
    await expect(chen.locator("#sv-queues")).to_have_text("—")
    await chen.screenshot(path=ARTIFACTS / "supervise_page_no_queues.png", full_page=True)
