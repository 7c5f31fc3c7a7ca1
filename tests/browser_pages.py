"""A Chromium page signed in through the sign-in form, as a user does it, for the browser tests."""

from __future__ import annotations

from playwright.async_api import Browser, Page
from test_pops import PASSWORD

WAIT_MS = 15_000


async def signed_in_page(
    browser: Browser, origin: str, username: str, path: str, *, locale: str = "zh-CN",
    height: int = 768, wait_ms: int = WAIT_MS,
) -> Page:  # fmt: skip
    """``path`` opened by ``username`` (password :data:`test_pops.PASSWORD`) at 1366 px wide:
    the sign-in form the page sends them to, then ``path`` itself; ``wait_ms`` is how long
    the page's actions and checks wait."""
    page = await browser.new_page(viewport={"width": 1366, "height": height}, locale=locale)
    page.set_default_timeout(wait_ms)
    await page.goto(f"{origin}{path}")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    if not page.url.endswith(path):
        await page.goto(f"{origin}{path}")
    return page
