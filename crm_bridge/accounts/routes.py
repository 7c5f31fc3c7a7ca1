"""Sign-in, sign-out and the administrator's user pages (server-rendered, zh-CN first).

Routes (browser pages, so they are left out of the OpenAPI document, which describes the API):

- ``GET /``: a signed-in user's own page (:data:`DEFAULT_LANDING`), anyone else ``/login``.
- ``GET/POST /login``: the sign-in form; limited per user name, per client address and in
  total (:class:`~crm_bridge.accounts.auth.SignInLimiter`).
- ``POST /logout``: ends every session of the user, in every tab and browser, and closes their
  pop sockets (:mod:`crm_bridge.accounts.session_revocation`).
- ``GET /admin/users``, ``POST /admin/users``, ``POST /admin/users/{user_id}``: list, create,
  change (display name, role, extensions, supervised queues, active, password);
  ``POST /admin/users/{user_id}/sign-out`` (end every session of the user),
  ``POST /admin/users/{user_id}/unlock`` (lift the user's sign-in limit); admins only.
- ``POST /language``: the language switch of every page (zh-CN or en), signed in or not:
  kept on the user (``users.language``) and in this browser (``crm_bridge.web.language``).

Every form carries the session's CSRF token. A form with bad input comes back with the errors
beside the fields and what was typed, except passwords.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts import auth
from crm_bridge.accounts.auth import AdminUser, SignedInUser
from crm_bridge.accounts.users import (
    UserInputError,
    authenticate,
    create_user,
    end_sessions,
    list_users,
    normalize_username,
    update_user,
)
from crm_bridge.db.models import LANGUAGES, ROLES, User
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.web.language import LANGUAGE_COOKIE
from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, RowId, page_templates

log = logging.getLogger(__name__)

WRONG_CREDENTIALS = "用户名或密码错误 / Wrong user name or password"
NO_SUCH_USER = "没有该用户 / No such user"
UNKNOWN_LANGUAGE = f"未知语言 / Unknown language (one of {', '.join(LANGUAGES)})"
DONE_MESSAGES = {
    "created": "用户已创建 / User created",
    "updated": "已保存 / Saved",
    "signed-out": "该用户已在所有设备登出 / The user is signed out everywhere",
    "unlocked": "已解除登录限制 / The sign-in limit is lifted",
}
DEFAULT_LANDING = {
    "agent": "/agent",
    "supervisor": "/supervisor/calls",
    "scheduler": "/campaigns",
    "admin": "/admin/users",
}
"""Each role's own page: where ``/`` and a sign-in without ``next`` lead."""


@dataclass(frozen=True)
class UserRow:
    """A user as the admin page shows it (never the password hash)."""

    id: int
    username: str
    role: str
    extensions: str
    supervised_queues: str
    display_name: str
    active: bool
    created_at: datetime
    limited: bool
    """Refused at sign-in right now for too many failures (an admin may lift it)."""

    @classmethod
    def of(cls, user: User, limited: bool) -> UserRow:
        return cls(
            user.id,
            user.username,
            user.role,
            " ".join(user.extensions),
            " ".join(user.supervised_queues or ()),
            user.display_name or "",
            user.active,
            user.created_at,
            limited,
        )


def safe_next(target: str) -> str | None:
    """``target`` when it is a path on this site, else None (no open redirect)."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(ch) < 0x20 for ch in target)
    ):
        return None
    return target


templates = page_templates()
router = APIRouter(include_in_schema=False)


def end_sessions_of(request: Request, user_id: int) -> None:
    """Close the pop sockets of a user whose sessions a committed change ended."""
    runtime_of(request).revocations.end(user_id)


def page(request: Request, name: str, context: dict[str, Any], status_code: int = 200):
    context = {"role_labels": ROLE_LABELS, "user": None, **context}
    return templates.TemplateResponse(
        request, name, context, status_code=status_code, headers=PAGE_HEADERS
    )


def login_page(request: Request, status_code: int = 200, **values: Any) -> Response:
    """The sign-in form, with an anonymous session (and its CSRF token) when there is none."""
    data = auth.read_session(request)
    fresh = data is None
    if data is None:
        data = auth.codec_for(request).anonymous()
    context = {"username": "", "next": "", "error": None, **values, "csrf_token": data.csrf}
    response = page(request, "login.html", context, status_code)
    if fresh:
        auth.set_session_cookie(response, request, data)
    return response


@router.get("/")
async def home(request: Request) -> Response:
    user = await auth.signed_in_user(request)
    target = DEFAULT_LANDING[user.role] if user is not None else auth.LOGIN_PATH
    return RedirectResponse(target, status.HTTP_303_SEE_OTHER)


@router.get("/login")
def login_form(request: Request, next: str = "") -> Response:
    return login_page(request, next=safe_next(next) or "")


@router.post("/login")
def login(
    request: Request,
    runtime: RuntimeDep,
    username: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    kept = {"username": username, "next": safe_next(next) or ""}
    data = auth.read_session(request)
    if data is None or not auth.constant_time_equal(csrf_token, data.csrf):
        return login_page(request, 403, error=auth.CSRF_FAILED, **kept)
    client = request.client.host if request.client else "unknown"
    name = normalize_username(username)
    wait = runtime.sign_in_limiter.attempt(name, client)
    if wait is not None:
        log.warning("sign-in refused: too many attempts from %s", client)
        minutes = math.ceil(wait / 60)
        message = (
            f"登录尝试过多，请 {minutes} 分钟后再试 / "
            f"Too many sign-in attempts: try again in {minutes} min"
        )
        response = login_page(request, 429, error=message, **kept)
        response.headers["Retry-After"] = str(wait)
        return response
    with runtime.sessions.begin() as session:
        user = authenticate(session, username, password)
        signed_in = auth.codec_for(request).signed_in(user) if user else None
        landing = DEFAULT_LANDING[user.role] if user else auth.LOGIN_PATH
    if signed_in is None:
        return login_page(request, 401, error=WRONG_CREDENTIALS, **kept)
    runtime.sign_in_limiter.succeeded(name, client)
    response = RedirectResponse(kept["next"] or landing, status.HTTP_303_SEE_OTHER)
    auth.set_session_cookie(response, request, signed_in)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    data = auth.read_session(request)
    if data is not None and data.uid is not None:
        given = (await request.form()).get(auth.CSRF_FIELD)
        if not auth.constant_time_equal(given, data.csrf):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail=auth.CSRF_FAILED)
        user = await auth.signed_in_user(request)
        if user is not None:
            await run_in_threadpool(sign_out_everywhere, request, user.id)
    response = RedirectResponse(auth.LOGIN_PATH, status.HTTP_303_SEE_OTHER)
    auth.clear_session_cookie(response, request)
    return response


LANGUAGE_COOKIE_SECONDS = 400 * 24 * 3600
"""How long a browser keeps the language chosen on it (the most Chromium keeps a cookie)."""


@router.post("/language")
async def choose_language(
    request: Request,
    language: Annotated[str, Form(max_length=8)] = "",
    csrf_token: Annotated[str, Form(max_length=256)] = "",
    back: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    """Switch the pages to ``language``, for the signed-in user (kept on their row, so every
    browser they sign in on follows) and for this browser (the sign-in page follows)."""
    data = auth.read_session(request)
    given = request.headers.get(auth.CSRF_HEADER) or csrf_token
    if data is None or not auth.constant_time_equal(given, data.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=auth.CSRF_FAILED)
    if language not in LANGUAGES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=UNKNOWN_LANGUAGE)
    user = await auth.signed_in_user(request)
    if user is not None:
        await run_in_threadpool(set_language, request, user.id, language)
    response = RedirectResponse(safe_next(back) or "/", status.HTTP_303_SEE_OTHER)
    response.set_cookie(LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_SECONDS,
                        secure=auth.is_secure(request), httponly=True,
                        samesite="lax")  # fmt: skip
    return response


def set_language(request: Request, user_id: int, language: str) -> None:
    with runtime_of(request).sessions.begin() as session:
        user = session.get(User, user_id)
        if user is not None:
            user.language = language


def sign_out_everywhere(request: Request, user_id: int) -> bool:
    """End every session of the user (False: no such user)."""
    with runtime_of(request).sessions.begin() as session:
        user = session.get(User, user_id)
        if user is None:
            return False
        end_sessions(user)
    end_sessions_of(request, user_id)
    return True


def known_queues(request: Request) -> list[str] | None:
    """The queues Asterisk reports (agent states), which a supervised queue must be one of;
    None when agent states are off (then any well-formed name is taken)."""
    states = runtime_of(request).agent_states
    return None if states is None else states.queues()


def admin_page(
    request: Request, admin: SignedInUser, status_code: int = 200, **values: Any
) -> Response:
    limited = runtime_of(request).sign_in_limiter.limited_users()
    with runtime_of(request).sessions() as session:
        rows = [UserRow.of(user, user.username in limited) for user in list_users(session)]
    context = {
        "user": admin,
        "csrf_token": admin.csrf_token,
        "users": rows,
        "roles": ROLES,
        "zone": runtime_of(request).settings.zone,
        "done": None,
        "new": {
            "username": "",
            "role": "agent",
            "extensions": "",
            "supervised_queues": "",
            "display_name": "",
        },
        "queues": known_queues(request),
        "new_errors": {},
        "edit_id": None,
        "edit": {},
        "edit_errors": {},
        **values,
    }
    return page(request, "admin_users.html", context, status_code)


@router.get("/admin/users")
def users_page(request: Request, admin: AdminUser, done: str = "") -> Response:
    return admin_page(request, admin, done=DONE_MESSAGES.get(done))


@router.post("/admin/users")
def add_user(
    request: Request,
    runtime: RuntimeDep,
    admin: AdminUser,
    username: Annotated[str, Form(max_length=256)] = "",
    password: Annotated[str, Form(max_length=4096)] = "",
    role: Annotated[str, Form(max_length=32)] = "",
    extensions: Annotated[str, Form(max_length=2048)] = "",
    supervised_queues: Annotated[str, Form(max_length=2048)] = "",
    display_name: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    new = {"username": username, "role": role, "extensions": extensions,
           "supervised_queues": supervised_queues, "display_name": display_name}  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            create_user(session, username, password, role, extensions, supervised_queues,
                        known_queues(request), display_name)  # fmt: skip
    except UserInputError as exc:
        return admin_page(request, admin, 400, new=new, new_errors=exc.errors)
    except IntegrityError:
        errors = {"username": "用户名已存在 / Username already taken"}
        return admin_page(request, admin, 400, new=new, new_errors=errors)
    log.info("user %s created by %s", normalize_username(username), admin.username)
    return RedirectResponse("/admin/users?done=created", status.HTTP_303_SEE_OTHER)


@router.post("/admin/users/{user_id}")
def change_user(
    request: Request,
    runtime: RuntimeDep,
    user_id: RowId,
    admin: AdminUser,
    role: Annotated[str, Form(max_length=32)] = "",
    extensions: Annotated[str, Form(max_length=2048)] = "",
    active: Annotated[str | None, Form(max_length=8)] = None,
    password: Annotated[str, Form(max_length=4096)] = "",
    supervised_queues: Annotated[str, Form(max_length=2048)] = "",
    display_name: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    edit = {"role": role, "extensions": extensions, "active": active is not None,
            "supervised_queues": supervised_queues, "display_name": display_name}  # fmt: skip
    response = RedirectResponse("/admin/users?done=updated", status.HTTP_303_SEE_OTHER)
    try:
        with runtime.sessions.begin() as session:
            user = session.get(User, user_id)
            if user is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_USER)
            generation = user.session_generation
            update_user(
                session,
                user,
                role=role,
                extensions=extensions,
                active=active is not None,
                password=password or None,
                supervised_queues=supervised_queues,
                known_queues=known_queues(request),
                display_name=display_name,
            )
            if password and user.id == admin.id:
                signed_in = auth.codec_for(request).signed_in(user)
                auth.set_session_cookie(response, request, signed_in)
    except UserInputError as exc:
        values = {"edit_id": user_id, "edit": edit, "edit_errors": exc.errors}
        return admin_page(request, admin, 400, **values)
    if user.session_generation != generation:
        end_sessions_of(request, user_id)
    log.info("user %s changed by %s", user.username, admin.username)
    return response


@router.post("/admin/users/{user_id}/sign-out")
def sign_out_user(request: Request, user_id: RowId, admin: AdminUser) -> Response:
    if not sign_out_everywhere(request, user_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_USER)
    log.info("every session of user %d ended by %s", user_id, admin.username)
    response = RedirectResponse("/admin/users?done=signed-out", status.HTTP_303_SEE_OTHER)
    if user_id == admin.id:
        auth.clear_session_cookie(response, request)
    return response


@router.post("/admin/users/{user_id}/unlock")
def unlock_user(
    request: Request, runtime: RuntimeDep, user_id: RowId, admin: AdminUser
) -> Response:
    with runtime.sessions() as session:
        user = session.get(User, user_id)
        if user is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_USER)
        username = user.username
    runtime.sign_in_limiter.unlock(username)
    log.info("sign-in limit of %s lifted by %s", username, admin.username)
    return RedirectResponse("/admin/users?done=unlocked", status.HTTP_303_SEE_OTHER)
