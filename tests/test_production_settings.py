"""Production settings: the API document off unless asked for and then behind sign-in, no
page loading from a CDN, and ``secure_cookies`` behind a TLS proxy."""

from __future__ import annotations

from contextlib import AsyncExitStack

import pytest
from test_auth import (
    CHEAP_ARGON2,
    TOKEN,
    Web,
    make_settings,
    seed_users,
    session_cookie_header,
    sign_in,
)

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.web.security_headers import PAGE_POLICY

DOC_PATHS = ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect")


@pytest.fixture(autouse=True)
def cheap(monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)


@pytest.fixture
async def web_with(tmp_path):
    """A factory: the app with test_auth's users and these settings overrides."""
    made: list = []
    async with AsyncExitStack() as stack:

        async def make(**overrides) -> Web:
            folder = tmp_path / str(len(made))
            folder.mkdir()
            made.append(folder)
            settings = make_settings(folder).model_copy(update=overrides)
            seed_users(settings.database_url)
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return Web(app, settings, stack)

        yield make


async def test_the_api_document_is_off_by_default(web_with):
    web = await web_with()
    admin = await web.signed_in("boss")
    for path in DOC_PATHS:
        assert (await admin.get(path)).status_code == 404, path
        token = {"Authorization": f"Bearer {TOKEN}"}
        assert (await admin.get(path, headers=token)).status_code == 404, path


async def test_when_on_the_document_is_for_supervisors_admins_and_the_token(web_with):
    web = await web_with(api_docs=True)
    anonymous = await web.client()
    assert (await anonymous.get("/openapi.json")).status_code == 401
    for name, expected in (("wang", 403), ("zhou", 403), ("lin", 200), ("boss", 200)):
        client = await web.signed_in(name)
        answer = await client.get("/openapi.json")
        assert answer.status_code == expected, name
    token = {"Authorization": f"Bearer {TOKEN}"}
    document = (await anonymous.get("/openapi.json", headers=token)).json()
    assert "/api/calls" in document["paths"]
    for path in ("/docs", "/redoc"):  # no page that would need a CDN
        assert (await anonymous.get(path, headers=token)).status_code == 404


async def test_no_answer_allows_a_cdn(web_with):
    web = await web_with(api_docs=True)
    admin = await web.signed_in("boss")
    for path in ("/admin/users", "/openapi.json", "/docs", "/login"):
        policy = (await admin.get(path)).headers["content-security-policy"]
        assert "cdn" not in policy and "https:" not in policy, path
    assert "jsdelivr" not in PAGE_POLICY


async def test_secure_cookies_forces_the_secure_flag_and_hsts_over_plain_http(web_with):
    plain = await web_with()
    client = await plain.client()
    answer = await sign_in(client, "boss", "admin-password-1")
    assert "secure" not in session_cookie_header(answer).lower()
    assert "strict-transport-security" not in answer.headers

    behind_proxy = await web_with(secure_cookies=True)
    client = await behind_proxy.client()
    first = await client.get("/login")
    assert "; secure" in first.headers["set-cookie"].lower()
    answer = await sign_in(client, "boss", "admin-password-1")
    assert "; secure" in session_cookie_header(answer).lower()
    assert answer.headers["strict-transport-security"] == "max-age=31536000"
