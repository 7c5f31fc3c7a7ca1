"""The shared page kit of the server-rendered pages: where the templates and static files are,
the headers every page carries, the role names as pages show them, and the path parameter that
names a database row. Each feature's routes build their pages from these."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from fastapi.templating import Jinja2Templates
from pydantic import Field

from crm_bridge.web.language import install_language_globals
from crm_bridge.web.shell import install_shell_globals

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent / "static"
ROLE_NAMES = {
    "agent": ("客服专员", "Agent"),
    "supervisor": ("客服主管", "Supervisor"),
    "scheduler": ("运营", "Scheduler"),
    "admin": ("管理员", "Administrator"),
}
ROLE_LABELS = {role: f"{zh} {en}" for role, (zh, en) in ROLE_NAMES.items()}
MAX_ROW_ID = 2**31 - 1
"""The largest id a row can have (PostgreSQL's ``integer``): a bigger id in a request is
refused with 422 before it reaches the database, where it would overflow (a 500)."""
RowId = Annotated[int, PathParam(ge=1, le=MAX_ROW_ID)]
"""A path parameter that names a database row."""
CustomerId = Annotated[int, Field(ge=1, le=MAX_ROW_ID)]
"""A field of a JSON body that names a customer."""
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def page_templates(*own_dirs: Path) -> Jinja2Templates:
    """The templates of a feature: its own folders first, then the shared ones (base.html),
    with the globals of the language and of the navigation bar (:mod:`crm_bridge.web.language`,
    :mod:`crm_bridge.web.shell`)."""
    templates = Jinja2Templates(directory=[*own_dirs, TEMPLATES_DIR])
    install_language_globals(templates.env)
    install_shell_globals(templates.env)
    templates.env.globals["role_names"] = ROLE_NAMES
    return templates


def input_error(message: str, errors: dict[str, str]) -> HTTPException:
    """The 400 a request with bad input gets: the message and the error of each field."""
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail={"message": message, "errors": errors})


icon_router = APIRouter(include_in_schema=False)


@icon_router.get("/favicon.ico")
def favicon() -> FileResponse:
    """What browsers ask for on every page that names no icon (a JSON answer too)."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")
