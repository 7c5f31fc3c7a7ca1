"""Sessions that end: a copied cookie stops working and every pop socket of the user closes at
once, on a real uvicorn, a real WebSocket client and the real sign-in form.

The socket's own periodic check (``web_agent.SESSION_CHECK_SECONDS``, 60 s) is left as it is,
so a socket closed within the few seconds a test waits was closed by the end of the session.
"""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager

import httpx
import pytest
from test_pops import CHEAP_ARGON2, CSRF_RE, PASSWORD, closed_with, hashed, next_frame, running_site
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from crm_bridge import cli
from crm_bridge.accounts import users
from crm_bridge.accounts.auth import SESSION_COOKIE
from crm_bridge.db.models import Customer, User
from crm_bridge.pops import page as web_agent
from crm_bridge.settings import DEMO_SECRET_KEY

ADMIN = "boss"


@pytest.fixture
async def site(tmp_path, monkeypatch):
    """test_pops' running site (uvicorn, simulator, its users) with an admin besides."""
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(User(username=ADMIN, password_hash=hashed(PASSWORD), role="admin"))
        yield running


async def csrf_of(client: httpx.AsyncClient) -> str:
    """The client's own session token (the sign-in page shows the session's token)."""
    return CSRF_RE.search((await client.get("/login")).text).group(1)


@asynccontextmanager
async def socket_with(site, cookie: str):
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie}"}
    url = f"ws://{site.address}/ws/pops"
    async with connect(url, additional_headers=headers, origin=site.origin) as ws:
        assert (await next_frame(ws))["type"] == "hello"
        yield ws


def zhang_id(site) -> int:
    with site.sessions()() as session:
        return session.query(Customer).filter_by(card_no="C0001").one().id


async def test_a_cookie_copied_before_sign_out_is_refused_after_it(site):
    async with site.signed_in("wang") as tab:
        copied = tab.cookies[SESSION_COOKIE]
        token = await csrf_of(tab)
        assert (await tab.post("/logout", data={"csrf_token": token})).status_code == 303
    async with httpx.AsyncClient(base_url=site.origin) as thief:
        thief.cookies.set(SESSION_COOKIE, copied)
        assert (await thief.get("/agent")).status_code == 401
        complaint = {"customer_id": zhang_id(site), "content": "x", "linkedid": "1.1"}
        answer = await thief.post("/me/complaints", json=complaint,
                                  headers={"X-CSRF-Token": token})  # fmt: skip
        assert answer.status_code == 401
    with pytest.raises(InvalidStatus):
        async with socket_with(site, copied):
            pass


async def test_signing_out_in_one_tab_closes_the_pop_socket_of_the_other(site):
    assert web_agent.SESSION_CHECK_SECONDS >= 60
    async with site.signed_in("wang") as first_tab, site.signed_in("wang") as second_tab:
        async with socket_with(site, second_tab.cookies[SESSION_COOKIE]) as second_socket:
            token = await csrf_of(first_tab)
            assert (await first_tab.post("/logout", data={"csrf_token": token})).status_code == 303
            assert await closed_with(second_socket) == web_agent.SESSION_ENDED
        assert (await second_tab.get("/agent")).status_code == 401


async def test_after_sign_out_no_card_reaches_the_other_tab(site):
    async with site.signed_in("wang") as first_tab, site.signed_in("wang") as second_tab:
        cookie = second_tab.cookies[SESSION_COOKIE]
        async with socket_with(site, cookie) as second_socket:
            await first_tab.post("/logout", data={"csrf_token": await csrf_of(first_tab)})
            await site.play("a_inbound_answered_1001")  # 张三 calls wang's extension
            kinds = []
            with pytest.raises(ConnectionClosed):
                while True:
                    kinds.append(json.loads(await second_socket.recv())["type"])
            assert "pop" not in kinds and "update" not in kinds
            assert second_socket.close_code == web_agent.SESSION_ENDED


@pytest.mark.parametrize(
    ("path", "form"),
    [
        ("/admin/users/{id}/sign-out", {}),
        ("/admin/users/{id}", {"role": "agent", "extensions": "1001", "active": "on",
                               "password": "a-brand-new-password"}),
        ("/admin/users/{id}", {"role": "agent", "extensions": "1001"}),
    ],
    ids=["sign-out-everywhere", "new-password", "deactivated"],
)  # fmt: skip
async def test_an_admin_ends_every_session_of_a_user_at_once(site, path, form):
    with site.sessions()() as session:
        wang_id = session.query(User).filter_by(username="wang").one().id
    async with site.signed_in("wang") as wang, site.signed_in(ADMIN) as admin:
        async with socket_with(site, wang.cookies[SESSION_COOKIE]) as socket:
            token = await csrf_of(admin)
            target = path.format(id=wang_id)
            answer = await admin.post(target, data={"csrf_token": token, **form})
            assert answer.status_code == 303, answer.text
            assert await closed_with(socket) == web_agent.SESSION_ENDED
        assert (await wang.get("/agent")).status_code == 401
        assert (await admin.get("/admin/users")).status_code == 200  # the admin's own stays


async def test_a_user_who_signs_in_again_gets_a_working_session(site):
    async with site.signed_in("wang") as tab:
        await tab.post("/logout", data={"csrf_token": await csrf_of(tab)})
    async with site.signed_in("wang") as again:
        assert (await again.get("/agent")).status_code == 200
        async with socket_with(site, again.cookies[SESSION_COOKIE]):
            pass


def test_the_demo_signs_sessions_with_a_key_made_for_each_run(tmp_path, monkeypatch):
    keys = []
    monkeypatch.setattr(cli, "_run", lambda settings, host, port: keys.append(settings.secret_key))
    monkeypatch.setattr("crm_bridge.demo.feed.ensure_demo_users", lambda url, password: ())
    for _ in range(2):
        cli.demo(host="127.0.0.1", port=8000, data_dir=tmp_path, speed=1.0)
    first, second = (key.get_secret_value() for key in keys)
    assert first != second
    assert DEMO_SECRET_KEY not in (first, second)
    assert all(len(key) >= 32 and re.fullmatch(r"[\w-]+", key) for key in (first, second))
