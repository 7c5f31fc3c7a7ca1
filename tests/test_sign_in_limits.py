"""The sign-in limit over real uvicorn, run with the options ``callbridge serve`` gives it
(``crm_bridge.app.server_options``): per address, per user across addresses, and forwarded
addresses believed only from the proxies the settings name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from test_auth import CHEAP_ARGON2, CSRF_RE, PASSWORDS, make_settings, seed_users, sign_in

from crm_bridge.accounts import users
from crm_bridge.app import create_app, server_options
from crm_bridge.db.models import User
from crm_bridge.settings import ConfigurationError, Settings


@asynccontextmanager
async def serving(tmp_path, **overrides) -> AsyncIterator[tuple[str, object]]:
    settings = make_settings(tmp_path).model_copy(update=overrides)
    seed_users(settings.database_url)
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                            **server_options(settings))  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task


@pytest.fixture(autouse=True)
def cheap(monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)


async def attempt(base: str, username: str, password: str, forwarded: str | None = None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        return (await sign_in(client, username, password)).status_code


async def test_one_address_cannot_try_thirty_names(tmp_path):
    async with serving(tmp_path) as (base, _):
        answers = [await attempt(base, f"name{n}", "wrong-password") for n in range(30)]
        assert answers[:20] == [401] * 20 and set(answers[20:]) == {429}
        assert await attempt(base, "lin", PASSWORDS["lin"]) == 429  # this address is limited


async def test_a_rotating_forwarded_for_from_loopback_is_not_believed(tmp_path):
    async with serving(tmp_path) as (base, app):
        answers = [await attempt(base, "lin", "wrong-password", f"10.0.0.{n}") for n in range(8)]
        assert answers[:5] == [401] * 5 and set(answers[5:]) == {429}
        # the address counted is the peer's: 20 failures in all from it, whatever it forwards
        # (5 counted above; refused attempts are not failures)
        names = [await attempt(base, f"name{n}", "wrong", f"10.0.1.{n}") for n in range(17)]
        assert names[:15] == [401] * 15 and set(names[15:]) == {429}


async def test_behind_a_named_proxy_the_forwarded_address_is_counted(tmp_path):
    async with serving(tmp_path, forwarded_allow_ips=["127.0.0.1"]) as (base, _):
        names = [await attempt(base, f"name{n}", "wrong", "203.0.113.7") for n in range(21)]
        assert names[:20] == [401] * 20 and names[20] == 429
        assert await attempt(base, "lin", PASSWORDS["lin"], "203.0.113.8") == 303
        # the user's own count holds across the addresses the proxy forwards
        guesses = [await attempt(base, "boss", "wrong", f"198.51.100.{n}") for n in range(7)]
        assert guesses[:5] == [401] * 5 and set(guesses[5:]) == {429}


async def test_an_admin_lifts_the_limit_of_a_user(tmp_path):
    async with serving(tmp_path) as (base, app):
        for _ in range(5):
            assert await attempt(base, "lin", "wrong-password") == 401
        assert await attempt(base, "lin", PASSWORDS["lin"]) == 429
        with app.state.runtime.sessions() as session:
            lin_id = session.query(User).filter_by(username="lin").one().id
        async with httpx.AsyncClient(base_url=base) as admin:
            assert (await sign_in(admin, "boss", PASSWORDS["boss"])).status_code == 303
            page = await admin.get("/admin/users")
            assert "登录受限" in page.text and "Sign-in limited" in page.text
            token = CSRF_RE.search(page.text).group(1)
            lifted = await admin.post(f"/admin/users/{lin_id}/unlock", data={"csrf_token": token})
            assert lifted.status_code == 303
            assert "Sign-in limited" not in (await admin.get("/admin/users")).text
        assert await attempt(base, "lin", PASSWORDS["lin"]) == 303


def test_forwarded_allow_ips_takes_addresses_and_networks_only(tmp_path):
    assert server_options(Settings(serving=False, data_dir=tmp_path))["proxy_headers"] is False
    with pytest.raises(ConfigurationError, match="forwarded_allow_ips"):
        Settings(serving=False, data_dir=tmp_path, forwarded_allow_ips="10.0.0.1,not-an-address")
    named = Settings(serving=False, data_dir=tmp_path, forwarded_allow_ips="10.0.0.1, 10.1.0.0/24")
    options = server_options(named)
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == "10.0.0.1,10.1.0.0/24"
