"""Bodies bounded before they are read, and control characters refused, on a real uvicorn.

The big bodies go over a real socket from a raw client, so nothing but the server decides when
to stop reading: a declared size past the route's limit is answered before any byte of the
body is sent; a streamed (chunked) one as soon as the limit is passed, long before the 150 MB
are all sent, and before the sign-in check (which would answer 401 or 403).
"""

from __future__ import annotations

import asyncio
import re
import select
import socket
from contextlib import AsyncExitStack

import httpx
import pytest
from test_auth import CSRF_RE, PASSWORDS, Web, make_settings, seed_users, sign_in
from test_pops import served

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.web.request_guards import DEFAULT_BODY_LIMIT, UPLOAD_BODY_LIMIT, body_limit

HUGE = 150 * 1024 * 1024
CHUNK = 1024 * 1024


@pytest.fixture
async def server(tmp_path, monkeypatch):
    """The app with test_auth's users under uvicorn; yields (host, port) and a Web helper."""
    from test_auth import CHEAP_ARGON2

    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    settings = make_settings(tmp_path)
    seed_users(settings.database_url)
    app = create_app(settings)
    async with served(app) as address, AsyncExitStack() as stack:
        host, port = address.split(":")
        yield (host, int(port)), Web(app, settings, stack)


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def declared(address, path: str, content_type: str, size: int) -> int:
    """Declare ``size`` bytes and send none; the status the server answers with."""
    with socket.create_connection(address, timeout=10) as sock:
        headers = {"Content-Type": content_type, "Content-Length": str(size)}
        sock.sendall(head(path, headers))
        return status_of(sock.recv(65536))


def streamed(address, path: str, content_type: str, size: int) -> tuple[int, int]:
    """Send ``size`` bytes chunked until the server answers; (status, bytes sent by then)."""
    sent = 0
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head(path, {"Content-Type": content_type, "Transfer-Encoding": "chunked"}))
        chunk = f"{CHUNK:x}\r\n".encode() + b"[" * CHUNK + b"\r\n"
        if content_type.startswith("multipart/"):  # a well-formed start: no parser stops early
            part = b'--x\r\nContent-Disposition: form-data; name="username"\r\n\r\n'
            sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        while sent < size:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += CHUNK
        else:
            sock.sendall(b"0\r\n\r\n")
        return status_of(sock.recv(65536)), sent


def test_each_route_has_its_limit():
    assert body_limit("/me/complaints") == body_limit("/login") == DEFAULT_BODY_LIMIT
    assert body_limit("/campaigns") == body_limit("/campaigns/7") == UPLOAD_BODY_LIMIT
    assert body_limit("/campaigns/7/action") == DEFAULT_BODY_LIMIT


async def test_a_declared_body_past_the_limit_is_refused_before_it_is_sent(server):
    address, _ = server
    for path, kind in (("/me/complaints", "application/json"),
                       ("/login", "multipart/form-data; boundary=x"),
                       ("/campaigns", "multipart/form-data; boundary=x")):  # fmt: skip
        assert await asyncio.to_thread(declared, address, path, kind, HUGE) == 413, path


async def test_a_streamed_body_is_refused_once_it_passes_the_limit(server):
    address, _ = server
    for path, kind in (("/me/complaints", "application/json"),
                       ("/login", "multipart/form-data; boundary=x"),
                       ("/admin/users", "application/x-www-form-urlencoded")):  # fmt: skip
        status, sent = await asyncio.to_thread(streamed, address, path, kind, HUGE)
        assert status == 413, path
        assert sent < 32 * CHUNK, f"{path}: {sent} bytes sent before the answer"


async def test_an_upload_route_takes_a_greeting_sized_body(server):
    """The campaign form's limit is the greeting's: 2 MiB reaches the route (403 here: no
    session), where 2 MiB anywhere else is refused."""
    address, _ = server
    body = b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\n" + b"0" * (2 * CHUNK)
    body += b"\r\n--x--\r\n"

    def post(path: str) -> int:
        with socket.create_connection(address, timeout=10) as sock:
            headers = {"Content-Type": "multipart/form-data; boundary=x",
                       "Content-Length": str(len(body)), "Accept": "application/json"}  # fmt: skip
            sock.sendall(head(path, headers) + body)
            return status_of(sock.recv(65536))

    assert await asyncio.to_thread(post, "/campaigns") in (401, 403)
    assert await asyncio.to_thread(post, "/supervisor/settings") == 413


# ------------------------------------------------------------------------------- control characters


CONTROLS = ["\x00", "\x1b", "\x7f", "\x85", "a\x00b"]


async def signed_in(server, username: str) -> httpx.AsyncClient:
    (host, port), web = server
    client = await web.stack.enter_async_context(
        httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30)
    )
    assert (await sign_in(client, username, PASSWORDS[username])).status_code == 303
    return client


async def test_a_control_character_in_the_transcript_search_is_a_clear_422(server):
    supervisor = await signed_in(server, "lin")
    for control in CONTROLS:
        answer = await supervisor.get("/supervisor/calls", params={"words": f"退款{control}了"})
        assert answer.status_code == 422, repr(control)
        (error,) = answer.json()["detail"]
        assert error["loc"] == ["query", "words"] and "控制字符" in error["msg"]
    plain = await supervisor.get("/supervisor/calls", params={"words": "退款了"})
    assert plain.status_code == 200


async def test_every_query_parameter_of_every_route_refuses_control_characters(server):
    """Every GET route, each of its declared query parameters in turn, as an admin (who may
    open every page): 422, never a 500."""
    _, web = server
    admin = await signed_in(server, "boss")
    checked = 0
    for template, route in get_routes(web.app):
        path = re.sub(r"\{[^}]+\}", "1", template)
        for name in [param.alias for param in route.dependant.query_params]:
            answer = await admin.get(path, params={name: "x\x00y"})
            assert answer.status_code == 422, (path, name, answer.status_code)
            checked += 1
    assert checked >= 20


async def test_json_and_form_fields_refuse_control_characters_but_keep_line_breaks(server):
    admin = await signed_in(server, "boss")
    token = CSRF_RE.search((await admin.get("/admin/users")).text).group(1)
    form = {"csrf_token": token, "username": "new\x00user", "password": "a-password-9",
            "role": "agent"}  # fmt: skip
    answer = await admin.post("/admin/users", data=form)
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "username"]
    headers = {"X-CSRF-Token": token}
    body = {"customer_id": 1, "content": "说了\x00什么", "linkedid": "1.1"}
    answer = await admin.post("/me/complaints", json=body, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "content"]
    body["content"] = "第一行\r\n第二行\t完"  # line breaks and tabs pass the guard
    assert (await admin.post("/me/complaints", json=body, headers=headers)).status_code != 422


def get_routes(app) -> list[tuple[str, object]]:
    """(full path, route) of every GET route, into included routers (see test_auth)."""
    found = []

    def walk(routes, prefix: str) -> None:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                walk(included.routes, prefix + route.include_context.prefix)
            elif "GET" in getattr(route, "methods", ()):
                found.append((prefix + route.path, route))

    walk(app.routes, "")
    return found
