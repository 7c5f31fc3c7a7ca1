"""Errors as a person in a browser sees them.

A browser asking for a page (``Accept: text/html``, not under ``/api/``) that ends in 403, 404,
405, 413, 422 or 429 gets a page in the app's look, in zh-CN with English beside: what went
wrong, the fields a bad address named (422), and the way on (the user's own page, sign in).
API clients, and everything else, keep FastAPI's JSON. Not being signed in is no error here:
a page request is sent to ``/login`` before it gets this far (``crm_bridge/accounts/auth.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from crm_bridge.web.pages import PAGE_HEADERS, page_templates

TITLES = {
    403: ("没有权限", "You may not open this page"),
    404: ("找不到此页面", "There is no such page"),
    405: ("不能这样打开此页面", "This page cannot be opened this way"),
    413: ("提交的内容太大", "What was sent is too large"),
    422: ("地址里有不对的值", "The address holds a value that is not right"),
    429: ("请求太频繁", "Too many requests"),
}
"""The errors shown as a page: each one's title in zh-CN and English."""

templates = page_templates()


def wants_page(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "") and not request.url.path.startswith(
        "/api/"
    )


def error_page(request: Request, code: int, detail: str, fields: list[dict[str, str]]) -> Response:
    zh, en = TITLES[code]
    context = {"code": code, "title_zh": zh, "title_en": en, "detail": detail, "fields": fields,
               "user": None}  # fmt: skip
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
    response = error_page(request, exc.status_code, _detail_text(exc.detail), [])
    response.headers.update(exc.headers or {})
    return response


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    if not wants_page(request):
        return await request_validation_exception_handler(request, exc)
    fields = [
        {"name": ".".join(str(part) for part in error["loc"][1:]) or str(error["loc"][0]),
         "where": str(error["loc"][0]), "message": error["msg"]}
        for error in exc.errors()
    ]  # fmt: skip
    return error_page(request, 422, "", fields)


def install_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
