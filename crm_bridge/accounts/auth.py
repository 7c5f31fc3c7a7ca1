"""Who is asking: browser sessions, CSRF, the sign-in limit, role checks, API access.

A browser session is one cookie, ``callbridge_session``, signed (not encrypted) with
``itsdangerous`` under ``settings.secret_key``. It carries:

- ``csrf``: the per-session synchronizer token every form and every unsafe request
  (POST/PUT/PATCH/DELETE) must echo, as the ``csrf_token`` form field or the ``X-CSRF-Token``
  header. A visitor who has not signed in gets a cookie with only this token, so the sign-in
  form is protected too; signing in issues a new one (no session fixation).
- ``uid``, ``ver`` and ``gen``: the user id, a keyed fingerprint of the user's password hash,
  and the user's ``session_generation`` when the cookie was issued. The user row is read on
  every request, and the cookie must match both: signing out, a new password, deactivation and
  an admin's "sign out everywhere" add one to the generation
  (``crm_bridge.accounts.users.end_sessions``), so every cookie of the user issued before, copied
  or not, stops working at once, and the open pop sockets are closed
  (``crm_bridge.accounts.session_revocation``). A change of role applies at once for the same
  reason.
- ``iat``: when the user signed in; a session ends 24 hours after that whatever happens.

The cookie is HttpOnly, SameSite=Lax, Secure when the request came over https, and has no
Max-Age (closing the browser ends it, which suits shared desks). The server ends a session idle
for 8 hours: the signature carries its time, and an active session gets a fresh signature at
most every few minutes through :class:`SessionRefreshMiddleware`.

Not signed in: 401, or a redirect to ``/login`` for a browser asking for a page. Signed in with
the wrong role: 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request, WebSocketException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from crm_bridge.db.models import ROLES, User

log = logging.getLogger(__name__)

SESSION_COOKIE = "callbridge_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
IDLE_TIMEOUT_SECONDS = 8 * 3600
ABSOLUTE_LIFETIME_SECONDS = 24 * 3600
REFRESH_AFTER_SECONDS = 300
"""An active session's cookie is re-signed when its signature is older than this."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_ROLES = ("supervisor", "admin")
"""Roles whose browser session may use ``/api/*`` (besides the API token)."""
LOGIN_PATH = "/login"

_REFRESH_KEY = "callbridge_session_refresh"
"""The ``request.state`` entry through which :func:`current_user` asks for a fresh cookie."""
_SALT = "callbridge.session"

CSRF_FAILED = "请求校验失败，请刷新页面后重试 / CSRF check failed: reload the page and try again"
NOT_SIGNED_IN = "请先登录 / Sign in first"


@dataclass(frozen=True)
class SessionData:
    """What the session cookie says (after its signature and age were checked)."""

    csrf: str
    uid: int | None = None
    ver: str | None = None
    gen: int | None = None
    iat: int | None = None
    signed_at: int = 0


@dataclass(frozen=True)
class SignedInUser:
    """The user behind a request; a plain copy of the row, without the password hash."""

    id: int
    username: str
    role: str
    extensions: tuple[str, ...]
    csrf_token: str
    supervised_queues: tuple[str, ...] = ()
    """The queues a supervisor may listen to (``crm_bridge.supervise``)."""
    language: str | None = None
    """The language the user chose for the pages (``crm_bridge.web.language``)."""
    display_name: str | None = None


class _ClockedSigner(TimestampSigner):
    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class SessionCodec:
    """Signs and checks session cookies; ``clock`` is there for tests of expiry."""

    def __init__(self, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret_key.encode()
        self._clock = clock
        self._serializer = URLSafeTimedSerializer(
            secret_key, salt=_SALT, signer=_ClockedSigner, signer_kwargs={"clock": clock}
        )

    def anonymous(self) -> SessionData:
        return SessionData(csrf=secrets.token_urlsafe(32))

    def signed_in(self, user: User) -> SessionData:
        """A fresh session for ``user`` with a new CSRF token."""
        return SessionData(
            csrf=secrets.token_urlsafe(32),
            uid=user.id,
            ver=self.fingerprint(user),
            gen=user.session_generation or 0,
            iat=int(self._clock()),
        )

    def fingerprint(self, user: User) -> str:
        """Changes whenever the password does; keyed, so the cookie reveals nothing of the hash."""
        message = f"{user.id}:{user.password_hash}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def encode(self, data: SessionData) -> str:
        payload: dict[str, Any] = {"csrf": data.csrf}
        if data.uid is not None:
            payload |= {"uid": data.uid, "ver": data.ver, "gen": data.gen, "iat": data.iat}
        return self._serializer.dumps(payload)

    def decode(self, token: str | None) -> SessionData | None:
        """The session, or None when the cookie is missing, forged, idle or too old."""
        if not token:
            return None
        try:
            payload, signed_at = self._serializer.loads(
                token, max_age=IDLE_TIMEOUT_SECONDS, return_timestamp=True
            )
        except (SignatureExpired, BadSignature):
            return None
        if not isinstance(payload, dict) or not isinstance(payload.get("csrf"), str):
            return None
        data = SessionData(
            csrf=payload["csrf"],
            uid=payload.get("uid"),
            ver=payload.get("ver"),
            gen=payload.get("gen"),
            iat=payload.get("iat"),
            signed_at=int(signed_at.timestamp()),
        )
        if data.uid is not None and (data.iat or 0) + ABSOLUTE_LIFETIME_SECONDS < self._clock():
            return None
        return data

    def expires_at(self, data: SessionData) -> float:
        """When ``data`` stops being accepted: idle since it was signed, or too old."""
        idle = data.signed_at + IDLE_TIMEOUT_SECONDS
        return idle if data.iat is None else min(idle, data.iat + ABSOLUTE_LIFETIME_SECONDS)

    def seconds_left(self, data: SessionData) -> float:
        return self.expires_at(data) - self._clock()

    def needs_refresh(self, data: SessionData) -> bool:
        return self._clock() - data.signed_at > REFRESH_AFTER_SECONDS


def codec_for(conn: HTTPConnection) -> SessionCodec:
    return SessionCodec(conn.app.state.runtime.settings.secret_key.get_secret_value())


def read_session(conn: HTTPConnection) -> SessionData | None:
    return codec_for(conn).decode(conn.cookies.get(SESSION_COOKIE))


def is_secure(conn: HTTPConnection) -> bool:
    """Whether cookies get the Secure flag: over https, or always with ``secure_cookies``."""
    settings = conn.app.state.runtime.settings
    return settings.secure_cookies or conn.url.scheme in ("https", "wss")


def set_session_cookie(response: Response, conn: HTTPConnection, data: SessionData) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        codec_for(conn).encode(data),
        secure=is_secure(conn),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, conn: HTTPConnection) -> None:
    response.delete_cookie(SESSION_COOKIE, secure=is_secure(conn), httponly=True, samesite="lax")


def constant_time_equal(given: object, expected: str) -> bool:
    return isinstance(given, str) and secrets.compare_digest(given.encode(), expected.encode())


def load_user(conn: HTTPConnection, data: SessionData | None) -> SignedInUser | None:
    """The active user a session belongs to, or None (anonymous, deactivated, new password,
    signed out since)."""
    if data is None or data.uid is None:
        return None
    runtime = conn.app.state.runtime
    with runtime.sessions() as session:
        user = session.get(User, data.uid)
        if user is None or not user.active:
            return None
        if not constant_time_equal(data.ver, codec_for(conn).fingerprint(user)):
            return None
        if data.gen != (user.session_generation or 0):
            return None
        return SignedInUser(user.id, user.username, user.role, tuple(user.extensions), data.csrf,
                            tuple(user.supervised_queues or ()), user.language,
                            user.display_name)  # fmt: skip


# ------------------------------------------------------------------------------- HTTP


async def current_user(request: Request) -> SignedInUser:
    """The signed-in user; checks CSRF on unsafe methods and keeps an active session alive."""
    user = await _session_user(request)
    if user is None:
        raise _not_signed_in(request)
    await _check_csrf(request, user.csrf_token)
    return user


CurrentUser = Annotated[SignedInUser, Depends(current_user)]


def require_role(*roles: str) -> Callable[..., Any]:
    """A dependency: the signed-in user, who must have one of ``roles`` (403 otherwise)."""
    if not roles or not set(roles) <= set(ROLES):
        raise ValueError(f"name one or more of the roles {ROLES}")

    async def dependency(user: CurrentUser) -> SignedInUser:
        if user.role not in roles:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=_forbidden(roles))
        return user

    return dependency


AGENT_DESK_ROLES = ("agent", "supervisor", "admin")
"""The roles that work at an agent's desk: the agent page and its API."""
AgentUser = Annotated[SignedInUser, Depends(require_role(*AGENT_DESK_ROLES))]
AdminUser = Annotated[SignedInUser, Depends(require_role("admin"))]


_bearer = HTTPBearer(auto_error=False, description="CALLBRIDGE_API_TOKEN")


async def api_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> SignedInUser | None:
    """``/api/*``: the API token (``Authorization: Bearer``), or a supervisor or admin session.

    A bearer token that is given must be right: it is never passed over for the cookie. Returns
    the signed-in user, or None for the token.
    """
    if credentials is not None:
        expected = request.app.state.runtime.settings.api_token
        if expected is not None and constant_time_equal(
            credentials.credentials, expected.get_secret_value()
        ):
            return None
        raise _api_unauthorized("missing or wrong API token")
    user = await _session_user(request)
    if user is None:
        raise _api_unauthorized("missing or wrong API token, and not signed in")
    if user.role not in API_ROLES:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=_forbidden(API_ROLES))
    await _check_csrf(request, user.csrf_token)
    return user


async def signed_in_user(request: Request) -> SignedInUser | None:
    """The user of the request's session, or None; no CSRF check, no refusal."""
    return await run_in_threadpool(load_user, request, read_session(request))


async def _session_user(request: Request) -> SignedInUser | None:
    """The user of the request's session, whose cookie is re-signed when it is getting old."""
    data = read_session(request)
    user = await run_in_threadpool(load_user, request, data)
    if user is not None and data is not None and codec_for(request).needs_refresh(data):
        setattr(request.state, _REFRESH_KEY, data)
    return user


async def _check_csrf(request: Request, expected: str) -> None:
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        given = (await request.form()).get(CSRF_FIELD)
    if not constant_time_equal(given, expected):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=CSRF_FAILED)


def _not_signed_in(request: Request) -> HTTPException:
    """A redirect to the sign-in page for a browser asking for a page; 401 for the rest."""
    if "text/html" not in request.headers.get("accept", ""):
        return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=NOT_SIGNED_IN)
    location = LOGIN_PATH
    target = _return_target(request)
    if target:
        location += "?next=" + quote(target, safe="")
    return HTTPException(
        status.HTTP_303_SEE_OTHER, detail=NOT_SIGNED_IN, headers={"Location": location}
    )


def _return_target(request: Request) -> str | None:
    """Where to come back to after signing in: the page asked for, or, for a form sent after
    the session ended (which cannot be sent again), the page of this site it was sent from."""
    if request.method == "GET":
        return request.url.path + (f"?{request.url.query}" if request.url.query else "")
    referer = urlsplit(request.headers.get("referer", ""))
    if referer.netloc and referer.netloc.lower() == request.headers.get("host", "").lower():
        return referer.path + (f"?{referer.query}" if referer.query else "")
    return None


def _api_unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def _forbidden(roles: Iterable[str]) -> str:
    return f"权限不足 / Forbidden: needs role {' or '.join(roles)}"


class SessionRefreshMiddleware:
    """Re-signs the cookie of an active session (see :func:`current_user`) on any response.

    Done here because a handler that returns its own Response (a page, a redirect) drops the
    headers a dependency sets. A response that sets the session cookie itself (sign-in,
    sign-out) is left alone.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})

        async def send_with_cookie(message: Message) -> None:
            data = state.get(_REFRESH_KEY)
            if message["type"] == "http.response.start" and data is not None:
                headers = list(message.get("headers", []))
                if not _sets_session_cookie(headers):
                    carrier = Response()
                    set_session_cookie(carrier, HTTPConnection(scope), data)
                    headers += [h for h in carrier.raw_headers if h[0] == b"set-cookie"]
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _sets_session_cookie(headers: list[tuple[bytes, bytes]]) -> bool:
    prefix = f"{SESSION_COOKIE}=".encode()
    return any(name == b"set-cookie" and value.startswith(prefix) for name, value in headers)


# ------------------------------------------------------------------------------- WebSocket


async def user_from_websocket(websocket: WebSocket, *roles: str) -> SignedInUser:
    """The signed-in user opening ``websocket``, checked before it is accepted.

    The Origin must be this server (a page elsewhere cannot ride the cookie: cross-site
    WebSocket hijacking; behind a proxy, the Host header must be passed on), the session valid,
    and the role one of ``roles`` (any role when none is named). Otherwise the handshake is
    refused: the close code is 1008 (policy violation), which uvicorn answers with HTTP 403.
    """
    if not same_origin(websocket):
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason="origin not allowed")
    user = await run_in_threadpool(load_user, websocket, read_session(websocket))
    if user is None:
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason="not signed in")
    if roles and user.role not in roles:
        raise WebSocketException(status.WS_1008_POLICY_VIOLATION, reason="forbidden")
    return user


def same_origin(conn: HTTPConnection) -> bool:
    """True when the Origin header names the host the request was sent to (missing: False)."""
    origin = conn.headers.get("origin")
    host = conn.headers.get("host")
    if not origin or not host:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


# ------------------------------------------------------------------------------- sign-in limit


class SignInLimiter:
    """Failed sign-ins counted three ways over a sliding ``window``: per client address, per user
    name (whatever the address) and in total. Past any of the limits, sign-in is refused for
    that address, that user or everyone until the oldest failure in the window is old enough.

    So one address cannot try many names (``per_address``), many addresses cannot share the
    guesses at one user (``per_user``), and a botnet cannot go past ``total`` guesses per
    window. While a count is at its limit even the right password is refused, so guessing cannot
    go faster than the limit; an admin lifts a user's limit (:meth:`unlock`).

    The client address is what uvicorn reports: the peer's, or, only behind a proxy named in
    ``CALLBRIDGE_FORWARDED_ALLOW_IPS``, the one that proxy forwards (``crm_bridge.cli``).
    Scope: kept in this process's memory, so it is per web process and forgotten on restart.
    """

    MAX_TRACKED = 10_000
    """Past this many names or addresses, the ones with no recent failure are forgotten."""

    def __init__(
        self,
        per_user: int = 5,
        per_address: int = 20,
        total: int = 200,
        window: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {"user": per_user, "address": per_address, "total": total}
        self.window = window
        self._clock = clock
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def attempt(self, username: str, address: str) -> int | None:
        """Count a sign-in attempt: None when it may go ahead, else seconds to wait.

        The attempt is counted as a failure before the password is checked, so guesses sent in
        parallel are all counted; :meth:`succeeded` takes it back.
        """
        keys = self._keys(username, address)
        with self._lock:
            now = self._clock()
            waits = [
                math.ceil(recent[0] + self.window - now)
                for key in keys
                if len(recent := self._recent(key)) >= self.limits[key[0]]
            ]
            if waits:
                return max(1, *waits)
            if len(self._failures) + len(keys) > self.MAX_TRACKED:
                self._forget_stale()
            for key in keys:
                self._failures.setdefault(key, deque()).append(now)
            return None

    def succeeded(self, username: str, address: str) -> None:
        """The attempt was right: the user's count starts again; the address and the total
        lose this one attempt only (a valid account must not wipe an address's failures)."""
        user, *shared = self._keys(username, address)
        with self._lock:
            self._failures.pop(user, None)
            for key in shared:
                if times := self._failures.get(key):
                    times.pop()

    def unlock(self, username: str) -> None:
        """An admin lifts the limit of ``username`` (its failures are forgotten)."""
        with self._lock:
            self._failures.pop(("user", username), None)

    def limited_users(self) -> set[str]:
        """The user names refused right now."""
        with self._lock:
            return {
                key[1]
                for key in list(self._failures)
                if key[0] == "user" and len(self._recent(key)) >= self.limits["user"]
            }

    @staticmethod
    def _keys(username: str, address: str) -> list[tuple[str, str]]:
        return [("user", username), ("address", address), ("total", "")]

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= self._clock() - self.window:
            times.popleft()
        return times

    def _forget_stale(self) -> None:
        horizon = self._clock() - self.window
        for key in [k for k, times in self._failures.items() if not times or times[-1] <= horizon]:
            del self._failures[key]
