"""The admin's forms with bad input, in Chromium, on an English page and on a Chinese one: the
do-not-call page (a number, an opt-out, a guardian's consent), the users page (a new user, a
changed one) and the routing page (a VIP level, the settings, an account manager).

Each refused form comes back with what was typed (never a password), each error beside its
field (the input marked invalid and described by it) in the page's language only, and nothing
stored. A screenshot of each refused form goes to ``test-artifacts/``.
"""

from __future__ import annotations

import pytest
from browser_pages import signed_in_page
from playwright.async_api import Browser, Page, expect
from sqlalchemy import func, select
from test_agent_browser import ARTIFACTS
from test_pops import CHEAP_ARGON2
from test_routing import ADMIN, routing_site, snapshot

from crm_bridge.accounts import users
from crm_bridge.campaigns import do_not_call
from crm_bridge.db.models import CustomerOptOut, DoNotCall, GuardianConsent, User
from crm_bridge.routing import store as routing_store

LANGUAGES = ["zh-CN", "en-US"]


@pytest.fixture
async def site(tmp_path, monkeypatch):
    """Admin ``root``, agents ``wang`` (1001) and ``li`` (PJSIP/1002), customer C0001 (金卡)."""
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with routing_site(tmp_path) as running:
        yield running


async def admin_page(site, browser: Browser, locale: str, path: str) -> Page:
    page = await signed_in_page(browser, site.origin, ADMIN, path, locale=locale, height=900)
    assert page.url == f"{site.origin}{path}"
    language = "en" if locale.startswith("en") else "zh-CN"
    await expect(page.locator("html")).to_have_attribute("lang", language)
    return page


def halves(message: str) -> tuple[str, str]:
    """The Chinese and the English of a ``"中文 / English"`` message."""
    zh, en = message.rsplit(" / ", 1)
    return zh, en


async def one_language(page: Page, locale: str, zh: str, en: str) -> None:
    """The page shows the half of ``zh``/``en`` its language wants, and nowhere the other."""
    shown, other = (en, zh) if locale.startswith("en") else (zh, en)
    body = page.locator("body")
    await expect(body).to_contain_text(shown, use_inner_text=True)
    await expect(body).not_to_contain_text(other, use_inner_text=True)
    assert other not in await page.content()


async def error_beside(page: Page, locale: str, field_id: str, message: str) -> None:
    """``message`` is shown beside the field ``field_id``, in the page's language only."""
    zh, en = halves(message)
    field = page.locator(f"#{field_id}")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_have_attribute("aria-describedby", f"{field_id}-error")
    error = page.locator(f"#{field_id}-error")
    await expect(error).to_have_attribute("role", "alert")
    await expect(error).to_have_text(en if locale.startswith("en") else zh)
    await one_language(page, locale, zh, en)


def count(site, model) -> int:
    with site.sessions()() as session:
        return session.scalar(select(func.count()).select_from(model))


def shot(page: Page, name: str, locale: str):
    ARTIFACTS.mkdir(exist_ok=True)
    return page.screenshot(path=ARTIFACTS / f"admin_{name}_{locale}.png", full_page=True)


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_a_bad_do_not_call_number_is_refused_beside_its_field(site, browser, locale):
    page = await admin_page(site, browser, locale, "/admin/do-not-call")
    await page.fill("#dnc-number", "12ab")
    await page.fill("#dnc-note", "客户要求")
    await page.click("#add-number")
    await error_beside(page, locale, "dnc-number", do_not_call.BAD_NUMBER)
    await expect(page.locator("#dnc-number")).to_have_value("12ab")
    await expect(page.locator("#dnc-note")).to_have_value("客户要求")
    await shot(page, "do_not_call_number_error", locale)

    await page.fill("#dnc-number", " ")
    await page.click("#add-number")
    await error_beside(page, locale, "dnc-number", do_not_call.NO_NUMBER)
    await expect(page.locator("#dnc-note")).to_have_value("客户要求")
    assert count(site, DoNotCall) == 0


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_an_opt_out_for_a_missing_card_is_refused_and_the_source_in_one_language(
    site, browser, locale
):
    page = await admin_page(site, browser, locale, "/admin/do-not-call")
    await page.fill("#opt-card", "K404")
    await page.fill("#opt-note", "电话里说的")
    await page.click("#add-opt-out")
    await error_beside(page, locale, "opt-card", do_not_call.NO_CARD)
    await expect(page.locator("#opt-card")).to_have_value("K404")
    await expect(page.locator("#opt-note")).to_have_value("电话里说的")
    await shot(page, "opt_out_error", locale)

    await page.locator("#opt-card").evaluate("input => { input.required = false; }")
    await page.fill("#opt-card", "")
    await page.click("#add-opt-out")  # an empty card no.: the page, not a bare 422
    await error_beside(page, locale, "opt-card", do_not_call.NO_CARD_GIVEN)
    await expect(page.locator("#opt-note")).to_have_value("电话里说的")
    assert count(site, CustomerOptOut) == 0

    await page.fill("#opt-card", "C0001")
    await page.click("#add-opt-out")
    source = page.locator("#opt-outs tbody tr").first.locator("td").nth(2)
    await expect(source).to_have_text("Admin" if locale.startswith("en") else "管理员")


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_a_guardians_consent_with_bad_input_is_refused_beside_its_fields(
    site, browser, locale
):
    page = await admin_page(site, browser, locale, "/admin/do-not-call")
    await page.fill("#guardian-card", "K404")
    await page.fill("#guardian-note", "书面同意")
    await page.locator("#guardian-name").evaluate("input => { input.required = false; }")
    await page.click("#add-guardian-consent")
    await error_beside(page, locale, "guardian-card", do_not_call.NO_CARD)
    await error_beside(page, locale, "guardian-name", do_not_call.NO_GUARDIAN)
    await expect(page.locator("#guardian-card")).to_have_value("K404")
    await expect(page.locator("#guardian-note")).to_have_value("书面同意")
    await shot(page, "guardian_consent_error", locale)
    assert count(site, GuardianConsent) == 0


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_a_new_user_with_bad_input_keeps_what_was_typed_but_the_password(
    site, browser, locale
):
    page = await admin_page(site, browser, locale, "/admin/users")
    before = count(site, User)
    await page.fill("#new-username", "wang")
    await page.fill("#new-display-name", "王五")
    await page.fill("#new-password", "short")
    await page.select_option("#new-role", "supervisor")
    await page.fill("#new-extensions", "1003")
    await page.click("form[action='/admin/users'] button[type=submit]")
    await error_beside(page, locale, "new-username", "用户名已存在 / Username already taken")
    await error_beside(page, locale, "new-password", users.password_problem("short"))
    await one_language(page, locale, *halves(
        "未能创建用户，请检查下列字段 / The user was not created: see below"))  # fmt: skip
    await expect(page.locator("#new-username")).to_have_value("wang")
    await expect(page.locator("#new-display-name")).to_have_value("王五")
    await expect(page.locator("#new-extensions")).to_have_value("1003")
    await expect(page.locator("#new-role")).to_have_value("supervisor")
    await expect(page.locator("#new-password")).to_have_value("")
    assert "short" not in await page.content()
    chosen = page.locator("#new-role option:checked")
    await expect(chosen).to_have_text("Supervisor" if locale.startswith("en") else "客服主管")
    await shot(page, "new_user_error", locale)

    await page.locator("#new-role").evaluate("select => { select.add(new Option('', '')); }")
    await page.select_option("#new-role", "")
    await page.fill("#new-username", "zhao")
    await page.fill("#new-password", "a-long-enough-password")
    await page.click("form[action='/admin/users'] button[type=submit]")
    await error_beside(page, locale, "new-role", users.role_problem(""))
    await expect(page.locator("#new-username")).to_have_value("zhao")
    assert count(site, User) == before


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_a_changed_user_with_a_weak_password_is_not_saved(site, browser, locale):
    with site.sessions()() as session:
        li = session.scalar(select(User).where(User.username == "li"))
        li_id, before = li.id, (li.role, li.extensions, li.password_hash)
    page = await admin_page(site, browser, locale, "/admin/users")
    row = page.locator(f"#user-{li_id}")
    await row.locator("summary").click()
    await page.select_option(f"#role-{li_id}", "supervisor")
    await page.fill(f"#extensions-{li_id}", "1009")
    await page.fill(f"#password-{li_id}", "short")
    await row.locator(f"form[action='/admin/users/{li_id}'] button[type=submit]").click()
    await error_beside(page, locale, f"password-{li_id}", users.password_problem("short"))
    await one_language(page, locale, "未保存", "Not saved")
    await expect(page.locator(f"#role-{li_id}")).to_have_value("supervisor")
    await expect(page.locator(f"#extensions-{li_id}")).to_have_value("1009")
    await expect(page.locator(f"#password-{li_id}")).to_have_value("")
    await expect(row.locator("td").nth(2)).to_have_text(
        "Agent" if locale.startswith("en") else "客服专员"
    )
    await shot(page, "changed_user_error", locale)
    with site.sessions()() as session:
        li = session.get(User, li_id)
        assert (li.role, li.extensions, li.password_hash) == before


@pytest.mark.parametrize("locale", LANGUAGES)
async def test_bad_routing_rules_are_refused_beside_their_fields(site, browser, locale):
    page = await admin_page(site, browser, locale, "/admin/routing")
    before = snapshot(site)
    await page.fill("#tier", "钻石卡")
    await page.fill("#priority", "0")
    await page.click("#add-tier button[type=submit]")
    await error_beside(page, locale, "tier", routing_store.NO_TIER)
    await error_beside(page, locale, "priority", routing_store.BAD_PRIORITY)
    await expect(page.locator("#tier")).to_have_value("钻石卡")
    await expect(page.locator("#priority")).to_have_value("0")
    await shot(page, "routing_tier_error", locale)

    await page.fill("#high_value_yuan", "lots")
    await page.fill("#manager_ring_seconds", "2")
    await page.click("#settings button[type=submit]")
    await error_beside(page, locale, "high_value_yuan", routing_store.BAD_AMOUNT)
    await error_beside(page, locale, "manager_ring_seconds", routing_store.BAD_RING)
    await expect(page.locator("#high_value_yuan")).to_have_value("lots")
    await shot(page, "routing_settings_error", locale)

    await page.fill("#card_no", "C9999")
    await page.fill("#extension", "1009")
    await page.click("#add-manager button[type=submit]")
    await error_beside(page, locale, "card_no", routing_store.NO_CARD)
    await error_beside(page, locale, "extension", routing_store.NO_AGENT)
    await expect(page.locator("#card_no")).to_have_value("C9999")
    await expect(page.locator("#extension")).to_have_value("1009")
    await shot(page, "routing_manager_error", locale)
    assert snapshot(site) == before
