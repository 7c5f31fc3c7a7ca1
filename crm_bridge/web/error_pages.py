"""Errors as a person in a browser sees them.

A browser asking for a page (``Accept: text/html``, not under ``/api/``) that ends in 403, 404,
405, 413, 422 or 429 gets a page in the app's shell (the navigation bar of a signed-in user),
in the page's language: what went wrong, each field a bad address or form named with what was
wrong with it and the value given (422), and the way on (the user's own page, sign in).
API clients, and everything else, keep FastAPI's JSON. Not being signed in is no error here:
a page request is sent to ``/login`` and back after (``crm_bridge/accounts/auth.py``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, page_templates

TITLES = {
    403: ("没有权限", "You may not open this page"),
    404: ("找不到此页面", "There is no such page"),
    405: ("不能这样打开此页面", "This page cannot be opened this way"),
    413: ("提交的内容太大", "What was sent is too large"),
    422: ("地址里有不对的值", "The address holds a value that is not right"),
    429: ("请求太频繁", "Too many requests"),
}
"""The errors shown as a page: each one's title in zh-CN and English."""

FIELD_PROBLEMS = {
    "missing": "缺少此值",
    "int_parsing": "应为整数",
    "int_type": "应为整数",
    "float_parsing": "应为数字",
    "bool_parsing": "应为是或否",
    "date_from_datetime_parsing": "应为日期",
    "date_parsing": "应为日期",
    "datetime_parsing": "应为日期时间",
    "datetime_from_date_parsing": "应为日期时间",
    "string_too_long": "太长",
    "string_too_short": "太短",
    "greater_than": "太小",
    "greater_than_equal": "太小",
    "less_than": "太大",
    "less_than_equal": "太大",
    "literal_error": "不是可选的值",
    "enum": "不是可选的值",
}
"""What pydantic's error types mean, in Chinese (its own message is the English)."""

MAX_SHOWN_VALUE = 80

UserOf = Callable[[Request], Awaitable[Any]]

templates = page_templates()


def wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        "/api/"
    )


async def error_page(
    request: Request, code: int, detail: str, fields: list[dict[str, str]]
) -> Response:
    zh, en = TITLES[code]
    user = await request.app.state.error_page_user(request)
    context = {"code": code, "title_zh": zh, "title_en": en, "detail": detail, "fields": fields,
               "user": user, "csrf_token": getattr(user, "csrf_token", ""),
               "role_labels": ROLE_LABELS}  # fmt: skip
    return templates.TemplateResponse(
        request, "error.html", context, status_code=code, headers=PAGE_HEADERS
    )


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):
        return str(detail.get("message", ""))
    return detail if isinstance(detail, str) else ""


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code not in TITLES or not wants_page(request):
        return await http_exception_handler(request, exc)
    response = await error_page(request, exc.status_code, _detail_text(exc.detail), [])
    response.headers.update(exc.headers or {})
    return response


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    if not wants_page(request):
        return await request_validation_exception_handler(request, exc)
    fields = [_field(error) for error in exc.errors()]
    return await error_page(request, 422, "", fields)


def _field(error: dict[str, Any]) -> dict[str, str]:
    """One bad value as the page names it: the field, where it was, what is wrong, the value."""
    location = [str(part) for part in error["loc"]]
    given = error.get("input")
    shown = "" if given is None or isinstance(given, dict) else str(given)
    if len(shown) > MAX_SHOWN_VALUE:
        shown = shown[:MAX_SHOWN_VALUE] + "…"
    return {
        "name": ".".join(location[1:]) or location[0],
        "where": location[0],
        "problem": FIELD_PROBLEMS.get(error["type"], "值不对"),
        "message": error["msg"],
        "value": shown,
    }


async def _nobody(request: Request) -> None:
    return None


def install_error_pages(app: FastAPI, user_of: UserOf = _nobody) -> None:
    """Errors as pages; ``user_of`` finds the signed-in user, whose navigation bar they show."""
    app.state.error_page_user = user_of
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
