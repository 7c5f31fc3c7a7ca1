"""Requests refused before any handler, authentication or parser sees them.

:class:`RequestGuardMiddleware` is the outermost layer of the app. It refuses:

- a body larger than its route allows (:func:`body_limit`; 64 KiB unless the route takes an
  upload), with 413, whether the size is declared (``Content-Length``, refused before a byte
  of the body is read) or only seen while the body streams in (chunked: refused as soon as the
  count passes the limit). So a 150 MB body costs the server at most the limit in memory, not
  150 MB, and never reaches the sign-in check or the multipart parser's spool file;
- a control character (``\\x00``-``\\x1f``, ``\\x7f``-``\\x9f``) in the path, in a query
  parameter's name or value (URL-decoded first), or in a field of a form or JSON body (where
  tab, line feed and carriage return may stay: notes have lines), with 422 and the place named.
  A NUL reaches no SQL statement (PostgreSQL refuses it in text, SQLite's FTS5 stops the
  string at it) and no log line.

Form and JSON bodies are small (their limit), so they are read whole here, checked, and handed
on unchanged. Multipart bodies (uploads) are only counted as they stream; their text fields
are checked by the routes that read them.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

KIB = 1024
MIB = 1024 * KIB
DEFAULT_BODY_LIMIT = 64 * KIB
"""JSON and form bodies: a note or a complaint is at most a few thousand characters."""
UPLOAD_BODY_LIMIT = 11 * MIB
"""A campaign form with its greeting (10 MiB,
``crm_bridge.campaigns.greetings.MAX_GREETING_BYTES``) and a pasted list of numbers; a
survey prompt upload (the same limit)."""
LIST_BODY_LIMIT = 1 * MIB
"""A pasted list of numbers (the do-not-call list)."""
ROUTE_BODY_LIMITS: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"/campaigns(/\d+)?"), UPLOAD_BODY_LIMIT),
    (re.compile(r"/supervisor/survey/prompts/[a-z]+"), UPLOAD_BODY_LIMIT),
    (re.compile(r"/admin/do-not-call"), LIST_BODY_LIMIT),
)
"""Routes allowed more than :data:`DEFAULT_BODY_LIMIT` (the whole path must match)."""
BODY_ALLOWED_CONTROLS = frozenset("\t\n\r")
TOO_LARGE = "请求内容过大 / Request body too large"
CONTROL_CHARACTER = "含有控制字符 / Contains a control character"


def body_limit(path: str) -> int:
    """The most bytes a request body to ``path`` may have."""
    for pattern, limit in ROUTE_BODY_LIMITS:
        if pattern.fullmatch(path):
            return limit
    return DEFAULT_BODY_LIMIT


def has_control(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` while a body streams past its limit; FastAPI and this
    middleware both answer it with 413."""

    def __init__(self) -> None:
        super().__init__(413, detail=TOO_LARGE)


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if (where := _control_in_url(scope)) is not None:
            await _refuse_control(scope, receive, send, where)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = body_limit(scope["path"])
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse({"detail": TOO_LARGE}, 413)(scope, receive, send)
            return
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if kind in ("application/json", "application/x-www-form-urlencoded"):
            await self._small_body(scope, receive, send, limit, kind)
        else:
            await self._streamed_body(scope, receive, send, limit)

    async def _small_body(
        self, scope: Scope, receive: Receive, send: Send, limit: int, kind: str
    ) -> None:
        """Read the whole body (at most ``limit``), check its text, then hand it on."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await JSONResponse({"detail": TOO_LARGE}, 413)(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if (where := _control_in_body(body, kind)) is not None:
            await _refuse_control(scope, receive, send, where)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _streamed_body(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Hand the body on as it comes, counting; past ``limit``, 413."""
        size = 0
        started = False

        async def counted() -> Message:
            nonlocal size
            message = await receive()
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limit:
                    raise BodyTooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge:
            if started:
                raise
            await JSONResponse({"detail": TOO_LARGE}, 413)(scope, receive, send)


def _control_in_url(scope: Scope) -> list[str] | None:
    """Where the path or the query string holds a control character, or None."""
    if has_control(scope["path"]):
        return ["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if has_control(name) or has_control(value):
            return ["query", name]
    return None


def _control_in_body(body: bytes, kind: str) -> list[str] | None:
    """Where a form or JSON body holds a control character (beyond tab and line ends)."""
    text = body.decode("utf-8", errors="replace")
    if kind == "application/x-www-form-urlencoded":
        for name, value in parse_qsl(text, keep_blank_values=True, errors="replace"):
            if has_control(name) or has_control(value, BODY_ALLOWED_CONTROLS):
                return ["body", name]
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None  # not JSON: the route's own parser answers 422
    for place, value in _strings(document, ["body"]):
        if has_control(value, BODY_ALLOWED_CONTROLS):
            return place
    return None


def _strings(value: Any, place: list[str]) -> Iterator[tuple[list[str], str]]:
    """Every string of a JSON document (keys too), with where it is."""
    if isinstance(value, str):
        yield place, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield place + [key], key
            yield from _strings(item, place + [key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, place + [str(index)])


async def _refuse_control(scope: Scope, receive: Receive, send: Send, where: list[str]) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": "control character"})
        return
    error = {"type": "value_error", "loc": where, "msg": CONTROL_CHARACTER}
    await JSONResponse({"detail": [error]}, 422)(scope, receive, send)
