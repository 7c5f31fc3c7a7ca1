"""What the supervisors' pages share (live speech's page too): the roles let in, the headers,
the navigation, the page renderer, and the readers of the filters they take as text.
"""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request

from crm_bridge.accounts import auth
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.accounts.users import UserInputError
from crm_bridge.runtime import runtime_of
from crm_bridge.settings import Settings
from crm_bridge.web.pages import MAX_ROW_ID, PAGE_HEADERS, ROLE_LABELS, page_templates

SUPERVISOR_ROLES = ("supervisor", "admin")


LIST_PAGE = 50


PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; media-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


SUPERVISOR_PAGE_HEADERS = PAGE_HEADERS | {"Content-Security-Policy": PAGE_POLICY}


DIRECTIONS = {"inbound": "呼入 Inbound", "outbound": "呼出 Outbound"}


DISPOSITIONS = {
    "answered": "已接 Answered",
    "abandoned": "放弃 Abandoned",
    "busy": "忙 Busy",
    "no_answer": "未接 No answer",
    "failed": "失败 Failed",
}


NAV = (
    ("/supervisor/calls", "通话", "Calls"),
    ("/supervisor/flags", "标记", "Flagged"),
    ("/supervisor/complaints", "投诉", "Complaints"),
    ("/supervisor/visits", "回访意见", "Visits"),
    ("/supervisor/kpis", "指标", "KPIs"),
    ("/supervisor/survey", "满意度评价", "Survey"),
    ("/supervisor/settings", "设置", "Settings"),
)


Supervisor = Annotated[SignedInUser, Depends(auth.require_role(*SUPERVISOR_ROLES))]


templates = page_templates()

SURVEY_LABELS = {
    1: "非常不满意 Very dissatisfied",
    2: "不满意 Dissatisfied",
    3: "一般 Neutral",
    4: "满意 Satisfied",
    5: "非常满意 Very satisfied",
}
"""What each survey score (``calls.survey_score``) means to the customer who pressed it."""


def demo_without_speech(settings: Settings) -> bool:
    """The demo runs its own speech worker only with a model: without one, its supervisors'
    pages say what to install, or no transcript, flag or "words said" hit would ever show."""
    return settings.demo and settings.vosk_model is None


def page(request: Request, user: SignedInUser, name: str, context: dict[str, Any]):
    context = {
        "user": user,
        "csrf_token": user.csrf_token,
        "role_labels": ROLE_LABELS,
        "nav": NAV,
        "here": request.url.path,
        "query_without_after": urlencode(
            [(k, v) for k, v in request.query_params.multi_items() if k != "after"]
        ),
        "zone": runtime_of(request).settings.zone,
        "demo_without_speech": demo_without_speech(runtime_of(request).settings),
        "directions": DIRECTIONS,
        "dispositions": DISPOSITIONS,
        "survey_labels": SURVEY_LABELS,
        **context,
    }
    return templates.TemplateResponse(request, name, context, headers=SUPERVISOR_PAGE_HEADERS)


def row_id(text: str) -> int | None:
    """The id a form field holds, or None for anything else: ``str.isdigit`` alone lets
    through "²", which ``int`` refuses, and numbers past the database's integers."""
    if text.isascii() and text.isdigit() and int(text) <= MAX_ROW_ID:
        return int(text)
    return None


def local_moment(text: str, zone: tzinfo) -> datetime | None:
    """A ``datetime-local`` form field, read in the center's zone."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserInputError({"follow_up_at": "时间格式无效 / Not a date and time"}) from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment
