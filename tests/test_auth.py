"""Users, browser sessions, CSRF, the sign-in limit and role checks, through the real app.

Real SQLite file, real argon2, the app built by ``create_app`` and driven over ASGI; AMI points
at a closed port on 127.0.0.1 (the app starts without Asterisk).
"""

from __future__ import annotations

import re
import socket
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
import pytest
from argon2 import PasswordHasher, extract_parameters
from sqlalchemy import func, select
from starlette.websockets import WebSocket
from test_pops import served
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from crm_bridge.accounts import users
from crm_bridge.accounts.auth import (
    IDLE_TIMEOUT_SECONDS,
    REFRESH_AFTER_SECONDS,
    SESSION_COOKIE,
    SessionCodec,
    SessionData,
    SignInLimiter,
    user_from_websocket,
)
from crm_bridge.accounts.users import (
    UserInputError,
    authenticate,
    create_user,
    deactivate,
    set_password,
    update_user,
)
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import User
from crm_bridge.settings import Settings

TOKEN = "test-token-0123456789"
SECRET_KEY = "a-test-secret-key-of-some-length"
PASSWORDS = {
    "boss": "admin-password-1",
    "lin": "supervisor-pass-2",
    "wang": "agent-password-3",
    "zhou": "scheduler-pass-4",
}
ROLES = {"boss": "admin", "lin": "supervisor", "wang": "agent", "zhou": "scheduler"}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


CHEAP_ARGON2 = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
"""Real argon2id with small parameters, so that the many sign-ins here take milliseconds; the
production parameters are exercised by ``test_an_outdated_hash_is_replaced_on_sign_in``."""


@pytest.fixture
def cheap_argon2(monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)


@cache
def hashed(password: str) -> str:
    return CHEAP_ARGON2.hash(password)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        ami_host="127.0.0.1",
        ami_port=closed_port(),
        ami_secret="unused-secret",
        api_token=TOKEN,
        secret_key=SECRET_KEY,
    )


def seed_users(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    with make_session_factory(engine).begin() as session:
        for name, password in PASSWORDS.items():
            extensions = ["1001", "PJSIP/1001"] if name == "wang" else []
            session.add(
                User(
                    username=name,
                    password_hash=hashed(password),
                    role=ROLES[name],
                    extensions=extensions,
                )
            )
    engine.dispose()


@dataclass
class Web:
    app: object
    settings: Settings
    stack: AsyncExitStack

    async def client(self, base_url: str = "http://test") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app)
        return await self.stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url=base_url)
        )

    async def signed_in(self, username: str) -> httpx.AsyncClient:
        client = await self.client()
        response = await sign_in(client, username, PASSWORDS[username])
        assert response.status_code == 303, response.text
        return client

    def sessions(self):
        return self.app.state.runtime.sessions

    def user(self, username: str) -> User:
        with self.sessions()() as session:
            return session.scalar(select(User).where(User.username == username))


@pytest.fixture
async def web(tmp_path, cheap_argon2):
    settings = make_settings(tmp_path)
    seed_users(settings.database_url)
    app = create_app(settings)
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:
        yield Web(app, settings, stack)


async def client_with_cookie(web: Web, cookie: str) -> httpx.AsyncClient:
    client = await web.client()
    client.cookies.set(SESSION_COOKIE, cookie)
    return client


def csrf_in(html: str) -> str:
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def sign_in(client, username: str, password: str, next: str = "") -> httpx.Response:
    token = csrf_in((await client.get("/login")).text)
    form = {"username": username, "password": password, "csrf_token": token, "next": next}
    return await client.post("/login", data=form)


async def admin_form(client, path: str, form: dict[str, str]) -> httpx.Response:
    """POST a form from the admin page, with the CSRF token the page carries."""
    token = csrf_in((await client.get("/admin/users")).text)
    return await client.post(path, data={"csrf_token": token, **form})


async def admin_form_as(client, path: str, form: dict[str, str]) -> httpx.Response:
    """POST with the client's own valid CSRF token (from the sign-in page of its session)."""
    token = csrf_in((await client.get("/login")).text)
    return await client.post(path, data={"csrf_token": token, **form})


def session_cookie_header(response: httpx.Response) -> str:
    (header,) = [
        h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE + "=")
    ]
    return header


def count_users(web: Web) -> int:
    with web.sessions()() as session:
        return session.scalar(select(func.count(User.id)))


# ------------------------------------------------------------------------------- signing in


async def test_sign_in_sets_an_httponly_samesite_session_cookie(web):
    client = await web.client()
    page = await client.get("/login")
    assert page.status_code == 200
    assert "登录" in page.text and "Sign in" in page.text
    assert SESSION_COOKIE in page.cookies  # the anonymous session that carries the CSRF token
    response = await sign_in(client, "boss", PASSWORDS["boss"])
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users"
    header = session_cookie_header(response).lower()
    assert "httponly" in header and "samesite=lax" in header and "path=/" in header
    assert "max-age" not in header and "secure" not in header
    listing = await client.get("/admin/users")
    assert listing.status_code == 200 and "boss" in listing.text


async def test_the_cookie_is_secure_over_https(web):
    client = await web.client("https://test")
    response = await sign_in(client, "lin", PASSWORDS["lin"])
    assert response.status_code == 303
    assert "secure" in session_cookie_header(response).lower()


async def test_wrong_password_and_unknown_user_get_the_same_answer(web):
    client = await web.client()
    wrong = await sign_in(client, "boss", "not-the-password")
    unknown = await sign_in(client, "nobody", "not-the-password")
    for response, name in ((wrong, "boss"), (unknown, "nobody")):
        assert response.status_code == 401
        assert (
            "用户名或密码错误" in response.text and "Wrong user name or password" in response.text
        )
        assert f'value="{name}"' in response.text
        assert "not-the-password" not in response.text
    assert (await client.get("/admin/users")).status_code == 401


async def test_a_deactivated_user_cannot_sign_in(web):
    with web.sessions().begin() as session:
        deactivate(session, session.scalar(select(User).where(User.username == "wang")))
    response = await sign_in(await web.client(), "wang", PASSWORDS["wang"])
    assert response.status_code == 401


async def test_next_is_followed_only_within_the_site(web):
    client = await web.client()
    inside = await sign_in(client, "boss", PASSWORDS["boss"], next="/admin/users?done=updated")
    assert inside.headers["location"] == "/admin/users?done=updated"
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        response = await sign_in(await web.client(), "boss", PASSWORDS["boss"], next=target)
        assert response.headers["location"] == "/admin/users", target


# ------------------------------------------------------------------------------- CSRF


async def test_sign_in_without_the_csrf_token_is_refused(web):
    client = await web.client()
    await client.get("/login")
    form = {"username": "boss", "password": PASSWORDS["boss"]}
    missing = await client.post("/login", data=form)
    wrong = await client.post("/login", data={**form, "csrf_token": "forged"})
    for response in (missing, wrong):
        assert response.status_code == 403
        assert SESSION_COOKIE not in response.headers.get("location", "")
    assert (await client.get("/admin/users")).status_code == 401


async def test_a_form_without_the_right_csrf_token_is_refused_and_changes_nothing(web):
    admin = await web.signed_in("boss")
    other = await web.signed_in("lin")
    foreign_token = csrf_in((await other.get("/login")).text)
    form = {"username": "newbie", "password": "long-enough-pw", "role": "agent"}
    for extra in ({}, {"csrf_token": "forged"}, {"csrf_token": foreign_token}):
        response = await admin.post("/admin/users", data={**form, **extra})
        assert response.status_code == 403, extra
        assert "CSRF" in response.text
    wang = web.user("wang")
    change = {"role": "admin", "active": "on", "csrf_token": "forged"}
    assert (await admin.post(f"/admin/users/{wang.id}", data=change)).status_code == 403
    assert count_users(web) == len(PASSWORDS)
    assert web.user("wang").role == "agent"
    token = csrf_in((await admin.get("/admin/users")).text)
    by_header = await admin.post("/admin/users", data=form, headers={"X-CSRF-Token": token})
    assert by_header.status_code == 303
    assert count_users(web) == len(PASSWORDS) + 1


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(web):
    client = await web.signed_in("boss")
    refused = await client.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert (await client.get("/admin/users")).status_code == 200
    token = csrf_in((await client.get("/admin/users")).text)
    response = await client.post("/logout", data={"csrf_token": token})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await client.get("/admin/users")).status_code == 401


# ------------------------------------------------------------------------------- sign-in limit


async def test_sign_in_is_limited_per_name_and_address(web):
    client = await web.client()
    for _ in range(5):
        assert (await sign_in(client, "lin", "wrong-password")).status_code == 401
    limited = await sign_in(client, "lin", PASSWORDS["lin"])
    assert limited.status_code == 429
    assert "登录尝试过多" in limited.text and "Too many sign-in attempts" in limited.text
    assert 0 < int(limited.headers["retry-after"]) <= 300
    assert (await client.get("/admin/users")).status_code == 401
    assert (await sign_in(client, "boss", PASSWORDS["boss"])).status_code == 303


def test_the_limiter_forgets_after_its_window_and_on_success():
    now = [1000.0]
    limiter = SignInLimiter(per_user=3, per_address=100, total=100, window=60,
                            clock=lambda: now[0])  # fmt: skip
    assert [limiter.attempt("lin", "127.0.0.1") for _ in range(3)] == [None, None, None]
    assert limiter.attempt("lin", "127.0.0.1") == 60
    assert limiter.attempt("lin", "10.0.0.9") == 60  # the user's count holds across addresses
    assert limiter.attempt("boss", "127.0.0.1") is None
    now[0] += 30
    assert limiter.attempt("lin", "127.0.0.1") == 30
    now[0] += 31
    assert limiter.attempt("lin", "127.0.0.1") is None
    limiter.succeeded("lin", "127.0.0.1")
    assert [limiter.attempt("lin", "127.0.0.1") for _ in range(3)] == [None, None, None]


def test_the_limiter_counts_per_address_per_user_and_in_total():
    limiter = SignInLimiter(per_user=5, per_address=10, total=25, window=300)
    names = [f"user{n}" for n in range(30)]
    first = [limiter.attempt(name, "10.0.0.1") for name in names]
    assert first[:10] == [None] * 10 and all(wait for wait in first[10:])  # one address
    spread = [limiter.attempt(f"other{n}", f"10.0.1.{n}") for n in range(20)]
    assert spread[:15] == [None] * 15 and all(wait for wait in spread[15:])  # everyone: 25
    assert limiter.attempt("user0", "10.9.9.9") is not None


def test_a_success_takes_back_its_own_attempt_only():
    limiter = SignInLimiter(per_user=5, per_address=3, total=100, window=300)
    assert limiter.attempt("a", "10.0.0.1") is None
    assert limiter.attempt("b", "10.0.0.1") is None
    assert limiter.attempt("c", "10.0.0.1") is None
    limiter.succeeded("c", "10.0.0.1")  # c's password was right
    assert limiter.attempt("d", "10.0.0.1") is None
    assert limiter.attempt("e", "10.0.0.1") is not None  # a and b's failures still count


def test_an_admin_lifts_a_users_limit():
    limiter = SignInLimiter(per_user=2, per_address=100, total=100, window=300)
    for address in ("10.0.0.1", "10.0.0.2"):
        assert limiter.attempt("lin", address) is None
    assert limiter.attempt("lin", "10.0.0.3") is not None
    assert limiter.limited_users() == {"lin"}
    limiter.unlock("lin")
    assert limiter.limited_users() == set()
    assert limiter.attempt("lin", "10.0.0.3") is None


# ------------------------------------------------------------------------------- session end


def cookie_for(web: Web, username: str, signed_at: float, signed_in_at: float) -> str:
    user = web.user(username)
    codec = SessionCodec(SECRET_KEY, clock=lambda: signed_at)
    data = SessionData(csrf="t", uid=user.id, ver=codec.fingerprint(user),
                       gen=user.session_generation, iat=int(signed_in_at))  # fmt: skip
    return codec.encode(data)


async def test_an_idle_or_too_old_session_is_refused(web):
    now = time.time()
    fresh = cookie_for(web, "boss", now, now)
    idle = cookie_for(web, "boss", now - IDLE_TIMEOUT_SECONDS - 60, now - IDLE_TIMEOUT_SECONDS - 60)
    too_old = cookie_for(web, "boss", now, now - 25 * 3600)
    for cookie, expected in ((fresh, 200), (idle, 401), (too_old, 401)):
        client = await client_with_cookie(web, cookie)
        assert (await client.get("/admin/users")).status_code == expected


async def test_an_active_session_is_re_signed_now_and_then(web):
    now = time.time()
    recent = cookie_for(web, "boss", now, now)
    aging = cookie_for(web, "boss", now - REFRESH_AFTER_SECONDS - 60, now - 3600)
    kept = await (await client_with_cookie(web, recent)).get("/admin/users")
    assert kept.status_code == 200 and SESSION_COOKIE not in kept.cookies
    renewed = await (await client_with_cookie(web, aging)).get("/admin/users")
    assert renewed.status_code == 200
    assert "httponly" in session_cookie_header(renewed).lower()
    assert renewed.cookies[SESSION_COOKIE] not in (aging, recent)


async def test_a_forged_cookie_is_refused(web):
    user = web.user("boss")
    other_key = SessionCodec("another-secret-key-entirely")
    data = SessionData(csrf="t", uid=user.id, ver=other_key.fingerprint(user), iat=int(time.time()))
    client = await client_with_cookie(web, other_key.encode(data))
    assert (await client.get("/admin/users")).status_code == 401


async def test_deactivation_and_a_new_password_end_open_sessions(web):
    supervisor = await web.signed_in("lin")
    assert (await supervisor.get("/api/calls")).status_code == 200
    with web.sessions().begin() as session:
        set_password(session, session.get(User, web.user("lin").id), "a-brand-new-password")
    assert (await supervisor.get("/api/calls")).status_code == 401
    admin = await web.signed_in("boss")
    assert (await admin.get("/admin/users")).status_code == 200
    with web.sessions().begin() as session:
        update_user(session, session.get(User, web.user("lin").id), role="admin")
        deactivate(session, session.get(User, web.user("boss").id))
    assert (await admin.get("/admin/users")).status_code == 401


# ------------------------------------------------------------------------------- roles


async def test_admin_pages_are_for_admins_only(web):
    for name in ("wang", "lin", "zhou"):
        client = await web.signed_in(name)
        assert (await client.get("/admin/users")).status_code == 403, name
        form = {"username": "x" + name, "password": "long-enough-pw", "role": "admin"}
        response = await admin_form_as(client, "/admin/users", form)
        assert response.status_code == 403, name
    assert count_users(web) == len(PASSWORDS)
    anonymous = await web.client()
    assert (await anonymous.get("/admin/users")).status_code == 401
    browser = await anonymous.get("/admin/users", headers={"Accept": "text/html"})
    assert browser.status_code == 303
    assert browser.headers["location"] == "/login?next=%2Fadmin%2Fusers"


async def test_the_api_takes_the_token_or_a_supervisor_or_admin_session(web):
    for name, expected in (("lin", 200), ("boss", 200), ("wang", 403), ("zhou", 403)):
        client = await web.signed_in(name)
        assert (await client.get("/api/calls")).status_code == expected, name
    supervisor = await web.signed_in("lin")
    wrong_token = await supervisor.get("/api/calls", headers={"Authorization": "Bearer wrong"})
    assert wrong_token.status_code == 401
    anonymous = await web.client()
    ok = await anonymous.get("/api/calls", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200


PUBLIC = {("GET", "/health"), ("GET", "/login"), ("POST", "/login"), ("GET", "/favicon.ico")}
FASTAPI_DOCS = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def pages_outside_the_schema(app) -> set[tuple[str, str]]:
    """(method, path) of the routes the OpenAPI document leaves out: the browser pages.

    FastAPI lists an included router as one lazy entry, so the walk goes into each.
    """
    found: set[tuple[str, str]] = set()

    def walk(routes, prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            elif not hasattr(route, "methods"):
                continue  # a WebSocket route or a mount: tested on their own (test_pops)
            elif not route.include_in_schema and route.path not in FASTAPI_DOCS:
                found.update((method, prefix + route.path) for method in route.methods - {"HEAD"})

    walk(app.routes, "")
    return found


def every_route(app) -> set[tuple[str, str]]:
    documented = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    return documented | pages_outside_the_schema(app)


async def test_every_route_but_health_and_login_refuses_a_visitor_without_credentials(web):
    routes = every_route(web.app)
    assert {("GET", "/api/calls"), ("GET", "/admin/users"), ("POST", "/logout")} <= routes
    assert {("POST", "/admin/users/{user_id}")} <= routes
    client = await web.client()
    for method, template in sorted(routes - PUBLIC):
        path = re.sub(r"\{[^}]+\}", "1", template)
        for headers in ({}, {"Accept": "text/html"}, {"Authorization": "Bearer wrong"}):
            response = await client.request(method, path, headers=headers, params={"phone": "1"})
            if response.status_code == 303:
                assert response.headers["location"].startswith("/login"), (method, path)
            else:
                assert response.status_code in (401, 403), (method, path, headers)


# ------------------------------------------------------------------------------- admin page


async def test_admin_creates_an_agent_bound_to_extensions_who_can_sign_in(web):
    admin = await web.signed_in("boss")
    form = {
        "username": "Li.Na",
        "password": "li-na-password",
        "role": "agent",
        "extensions": "1002, PJSIP/1002  Local/1002@from-internal 1002",
    }
    response = await admin_form(admin, "/admin/users", form)
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/users?done=created"
    created = web.user("li.na")
    assert created.role == "agent" and created.active
    assert created.extensions == ["1002", "PJSIP/1002", "Local/1002@from-internal"]
    assert created.password_hash.startswith("$argon2id$")
    assert "用户已创建" in (await admin.get(response.headers["location"])).text
    agent = await web.client()
    signed_in = await sign_in(agent, "li.na", "li-na-password")
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/agent"


@pytest.mark.parametrize(
    ("form", "field_message"),
    [
        ({"username": "wang"}, "用户名已存在"),
        ({"username": "a b"}, "用户名须为"),
        ({"role": "superuser"}, "未知角色"),
        ({"extensions": "1003 PJSIP/1003\r\nAction: Originate"}, "分机格式无效"),
        ({"extensions": "1003;rm"}, "分机格式无效"),
        ({"password": "short"}, "密码至少 10 个字符"),
    ],
)
async def test_bad_input_on_the_admin_page_shows_an_error_and_keeps_what_was_typed(
    web, form, field_message
):
    admin = await web.signed_in("boss")
    typed = {
        "username": "newcomer",
        "password": "secret-password-x",
        "role": "supervisor",
        "extensions": "1003",
        **form,
    }
    response = await admin_form(admin, "/admin/users", typed)
    assert response.status_code == 400
    assert field_message in response.text
    assert f'value="{typed["username"]}"' in response.text
    assert typed["password"] not in response.text
    assert count_users(web) == len(PASSWORDS)


async def test_admin_changes_role_extensions_active_and_password(web):
    admin = await web.signed_in("boss")
    wang = web.user("wang")
    bad = await admin_form(
        admin,
        f"/admin/users/{wang.id}",
        {"role": "supervisor", "extensions": "10x", "active": "on"},
    )
    assert bad.status_code == 400 and "分机格式无效" in bad.text and 'value="10x"' in bad.text
    assert web.user("wang").role == "agent"
    form = {"role": "supervisor", "extensions": "2001", "password": "wang-new-password"}
    response = await admin_form(admin, f"/admin/users/{wang.id}", form)
    assert response.status_code == 303
    changed = web.user("wang")
    assert (changed.role, changed.extensions, changed.active) == ("supervisor", ["2001"], False)
    assert (await sign_in(await web.client(), "wang", "wang-new-password")).status_code == 401
    missing = await admin_form(admin, "/admin/users/99999", {"role": "agent", "active": "on"})
    assert missing.status_code == 404


async def test_the_last_admin_cannot_be_demoted_or_deactivated(web):
    admin = await web.signed_in("boss")
    boss = web.user("boss")
    for form in ({"role": "agent", "active": "on"}, {"role": "admin"}):
        response = await admin_form(admin, f"/admin/users/{boss.id}", form)
        assert response.status_code == 400 and "最后一个管理员" in response.text
    assert web.user("boss").role == "admin" and web.user("boss").active


async def test_an_admin_who_changes_their_own_password_stays_signed_in(web):
    admin = await web.signed_in("boss")
    boss = web.user("boss")
    form = {"role": "admin", "active": "on", "password": "boss-new-password"}
    assert (await admin_form(admin, f"/admin/users/{boss.id}", form)).status_code == 303
    assert (await admin.get("/admin/users")).status_code == 200


async def test_password_hashes_never_reach_a_page_or_a_response(web):
    admin = await web.signed_in("boss")
    supervisor = await web.signed_in("lin")
    bodies = [
        (await admin.get("/admin/users")).text,
        (await admin.get("/admin/users?done=updated")).text,
        (await admin_form(admin, "/admin/users", {"username": "boss", "password": "x"})).text,
        (await supervisor.get("/api/calls")).text,
        (await (await web.client()).get("/login")).text,
    ]
    hashes = [web.user(name).password_hash for name in PASSWORDS]
    assert all(h.startswith("$argon2id$") for h in hashes)
    for body in bodies:
        assert "$argon2" not in body
        for password_hash in hashes:
            assert password_hash not in body
            assert password_hash.rsplit("$", 1)[-1] not in body


def test_user_input_errors_name_every_bad_field(sqlite_sessions, cheap_argon2):
    with sqlite_sessions.begin() as session, pytest.raises(UserInputError) as caught:
        create_user(session, "x", "short", "root", ["12;3"])
    assert set(caught.value.errors) == {"username", "password", "role", "extensions"}


def test_an_outdated_hash_is_replaced_on_sign_in(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        session.add(User(username="old", password_hash=hashed("old-password-1"), role="agent"))
    with sqlite_sessions.begin() as session:
        assert authenticate(session, "old", "wrong-password") is None
        assert authenticate(session, "OLD", "old-password-1") is not None
    with sqlite_sessions() as session:
        new_hash = session.scalar(select(User.password_hash))
    assert new_hash != hashed("old-password-1")
    assert extract_parameters(new_hash) == extract_parameters(PasswordHasher().hash("x"))
    assert not PasswordHasher().check_needs_rehash(new_hash)


# ------------------------------------------------------------------------------- WebSocket


async def test_the_websocket_needs_a_session_the_role_and_this_origin(tmp_path, cheap_argon2):
    settings = make_settings(tmp_path)
    seed_users(settings.database_url)
    app = create_app(settings)

    @app.websocket("/ws/probe")
    async def probe(websocket: WebSocket) -> None:
        user = await user_from_websocket(websocket, "supervisor", "admin")
        await websocket.accept()
        await websocket.send_text(user.username)
        await websocket.close()

    async with served(app) as address:
        site = f"http://{address}"
        cookies = {}
        for name in ("wang", "lin"):
            async with httpx.AsyncClient(base_url=site) as client:
                assert (await sign_in(client, name, PASSWORDS[name])).status_code == 303
                cookies[name] = f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"
        url = f"ws://{address}/ws/probe"
        refusals = [
            ({}, site),
            ({"Cookie": cookies["wang"]}, site),
            ({"Cookie": cookies["lin"]}, "http://evil.example"),
            ({"Cookie": cookies["lin"]}, None),
        ]
        for headers, origin in refusals:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url, additional_headers=headers, origin=origin):
                    pass
            assert refused.value.response.status_code == 403, (headers, origin)
        async with connect(url, additional_headers={"Cookie": cookies["lin"]}, origin=site) as ws:
            assert await ws.recv() == "lin"


# ------------------------------------------------------------------------------- landing


@pytest.mark.parametrize(
    ("username", "page"),
    [("wang", "/agent"), ("lin", "/supervisor/calls"), ("zhou", "/campaigns"),
     ("boss", "/admin/users")],
)  # fmt: skip
async def test_each_role_lands_on_its_own_page(web, username, page):
    client = await web.client()
    signed_in = await sign_in(client, username, PASSWORDS[username])
    assert signed_in.status_code == 303 and signed_in.headers["location"] == page
    home = await client.get("/")
    assert home.status_code == 303 and home.headers["location"] == page
    assert (await client.get(page)).status_code == 200


async def test_home_sends_a_visitor_to_sign_in(web):
    client = await web.client()
    home = await client.get("/", headers={"Accept": "text/html"})
    assert home.status_code == 303 and home.headers["location"] == "/login"
    stale = await client_with_cookie(web, "not-a-valid-cookie")
    assert (await stale.get("/")).headers["location"] == "/login"
