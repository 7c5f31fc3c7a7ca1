"""The supervisors' pages of complaints and visit opinions, the KPIs, and their settings (the
pages of calls are :mod:`crm_bridge.supervision.call_pages`). Supervisors and admins only; agents
get 403.

Routes (browser pages, left out of the OpenAPI document):

- ``POST /supervisor/watch-words`` (and ``/remove``): the list of watch words.
- ``GET /supervisor/complaints`` (``?status=``, ``category=``, ``severity=``),
  ``GET /supervisor/complaints/{id}``,
  ``POST /supervisor/complaints/{id}/{assign|escalate|resolve}`` (assign and escalate audited);
  ``GET /supervisor/visits``.
- ``GET /supervisor/kpis``, ``GET /supervisor/kpis/export?table=…&format=xlsx|csv``
  (every export audited); ``GET/POST /supervisor/settings``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.accounts.people import AgentNames, agent_names
from crm_bridge.accounts.users import UserInputError
from crm_bridge.db.models import Complaint
from crm_bridge.pops.work import CATEGORY_LABELS, SEVERITY_LABELS
from crm_bridge.quality.scorecard import scores_by_agent
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.supervision import complaints, flags, kpis
from crm_bridge.supervision.agent_time import agent_time, agent_time_table
from crm_bridge.supervision.page_kit import LIST_PAGE, Supervisor, local_moment, page, row_id
from crm_bridge.supervision.settings import (
    SPECS,
    all_settings,
    get_setting,
    parse_setting,
    set_setting,
)
from crm_bridge.web.charts import bar_chart
from crm_bridge.web.exports import XLSX, to_csv, to_xlsx
from crm_bridge.web.local_days import form_days, utc_range
from crm_bridge.web.pages import RowId

KPI_TABLE_TITLES = {
    "day": "按日 By day",
    "agent": "按坐席 By agent",
    "queue": "按队列 By queue",
    "campaigns": "外呼活动 Campaign results",
    "agent_time": "坐席时间 Agent time",
    "quality": "质检评分 Quality reviews",
}
ADMIN_SETTINGS = frozenset({"recording_retention_days", "transcript_retention_days"})
"""Retention is the administrator's to set; supervisors see it."""
NO_COMPLAINT = "没有该投诉 / No such complaint"
COMPLAINT_FILTERS = {
    "open": complaints.OPEN_STATUSES,
    "resolved": ("resolved", "closed"),
    "all": ("open", "in_progress", "resolved", "closed"),
}


router = APIRouter(include_in_schema=False)


@router.get("/supervisor/complaints")
def complaints_page(
    request: Request,
    runtime: RuntimeDep,
    user: Supervisor,
    status_filter: Annotated[str, Query(alias="status", max_length=16)] = "open",
    category: Annotated[str, Query(max_length=16)] = "",
    severity: Annotated[str, Query(max_length=16)] = "",
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    statuses = COMPLAINT_FILTERS.get(status_filter, COMPLAINT_FILTERS["open"])
    category = category if category in CATEGORY_LABELS else ""
    severity = severity if severity in SEVERITY_LABELS else ""
    with runtime.sessions() as session:
        rows, total = complaints.list_complaints(
            session, statuses, category=category or None, severity=severity or None,
            limit=LIST_PAGE, offset=(page_no - 1) * LIST_PAGE,
        )  # fmt: skip
    context = {
        "rows": rows,
        "total": total,
        "page_no": page_no,
        "pages": max(1, -(-total // LIST_PAGE)),
        "status_filter": status_filter,
        "form": {"status": status_filter, "category": category, "severity": severity},
        "status_labels": complaints.STATUS_LABELS,
        "category_labels": CATEGORY_LABELS,
        "severity_labels": SEVERITY_LABELS,
    }
    return page(request, user, "supervisor_complaints.html", context)


def complaint_page(
    request: Request,
    user: SignedInUser,
    complaint_id: int,
    errors: dict[str, str],
    typed: dict[str, str] | None = None,
) -> Response:
    """The complaint; after a refused step, its error beside the field and what was typed."""
    with runtime_of(request).sessions() as session:
        complaint = session.get(Complaint, complaint_id)
        if complaint is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_COMPLAINT)
        context = {
            "complaint": complaint,
            "customer": complaint.customer,
            "events": complaints.history(session, complaint_id),
            "campaigns": complaints.follow_up_campaigns(session),
            "assignees": complaints.assignees(session),
            "escalation_users": complaints.escalation_users(session),
            "errors": errors,
            "typed": typed or {},
            "status_labels": complaints.STATUS_LABELS,
            "action_labels": complaints.ACTION_LABELS,
            "category_labels": CATEGORY_LABELS,
            "severity_labels": SEVERITY_LABELS,
        }
        response = page(request, user, "supervisor_complaint.html", context)
    if errors:
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response


@router.get("/supervisor/complaints/{complaint_id}")
def complaint_detail(request: Request, complaint_id: RowId, user: Supervisor) -> Response:
    return complaint_page(request, user, complaint_id, {})


@router.post("/supervisor/complaints/{complaint_id}/{action}")
def complaint_action(
    request: Request,
    runtime: RuntimeDep,
    complaint_id: RowId,
    action: Literal["assign", "escalate", "resolve"],
    user: Supervisor,
    who: Annotated[str, Form(max_length=256)] = "",
    text: Annotated[str, Form(max_length=4096)] = "",
    follow_up_at: Annotated[str, Form(max_length=32)] = "",
    campaign: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    zone = runtime.settings.zone
    try:
        with runtime.sessions.begin() as session:
            if action in ("assign", "escalate"):
                if action == "assign":
                    event = complaints.assign(
                        session, complaint_id, actor=user.username, handler=who
                    )
                else:
                    event = complaints.escalate(
                        session, complaint_id, actor=user.username, to=who, comment=text
                    )
                audit.record(
                    session, user=user, action=f"complaint_{action}",
                    subject=("complaint", complaint_id), client=audit.client_of(request),
                    details={"to": event.target, "status": event.to_status},
                )  # fmt: skip
            else:
                complaints.resolve(
                    session,
                    complaint_id,
                    actor=user.username,
                    resolution=text,
                    follow_up_at=local_moment(follow_up_at, zone),
                    follow_up_campaign_id=row_id(campaign),
                )
    except UserInputError as exc:
        typed = {"action": action, "who": who, "text": text, "follow_up_at": follow_up_at,
                 "campaign": campaign}  # fmt: skip
        return complaint_page(request, user, complaint_id, exc.errors, typed)
    return RedirectResponse(f"/supervisor/complaints/{complaint_id}", status.HTTP_303_SEE_OTHER)


@router.get("/supervisor/visits")
def visits_page(
    request: Request,
    runtime: RuntimeDep,
    user: Supervisor,
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    opinions: bool = False,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    start, end = utc_range(*form_days(since, until), runtime.settings.zone)
    with runtime.sessions() as session:
        rows, total = complaints.list_visits(
            session,
            since=start,
            until=end,
            with_opinions=opinions,
            limit=LIST_PAGE,
            offset=(page_no - 1) * LIST_PAGE,
        )
    context = {
        "rows": rows,
        "total": total,
        "page_no": page_no,
        "pages": max(1, -(-total // LIST_PAGE)),
        "form": {"since": since, "until": until, "opinions": opinions},
    }
    return page(request, user, "supervisor_visits.html", context)


def kpi_data(request: Request, since: str, until: str) -> dict[str, Any]:
    """Every KPI table of the period the form names (default: the last 7 days)."""
    zone = runtime_of(request).settings.zone
    first, last = form_days(since, until)
    today = datetime.now(zone).date()
    last = last or today
    first = first or last - timedelta(days=6)
    start, end = utc_range(first, last, zone)
    assert start is not None and end is not None
    period = kpis.Period(start, end, zone)
    with runtime_of(request).sessions() as session:
        threshold = get_setting(session, "service_level_seconds")
        window = get_setting(session, "fcr_window_hours")
        times = {d: agent_time(session, d, period) for d in kpis.DIMENSIONS}
        tables = {
            dimension: kpis.inbound_kpis(
                session, dimension, period, threshold_seconds=threshold,
                fcr_window_hours=window,
                after_call={row.key: row.after_call_work for row in times[dimension]},
            )
            for dimension in kpis.DIMENSIONS
        }  # fmt: skip
        campaigns = kpis.campaign_results(session, period)
        quality = scores_by_agent(session, start, end)
        agents = agent_names(session)
    shown = {d: kpis.inbound_table(d, rows) for d, rows in tables.items()}
    shown["campaigns"] = kpis.campaign_table(campaigns)
    shown["agent_time"] = agent_time_table(kpis.INBOUND_HEADERS["agent"], times["agent"])
    for table in ("agent", "agent_time"):
        shown[table] = named_agents(shown[table], agents)
    shown["quality"] = kpis.quality_table(quality)
    return {
        "agents": agents,
        "first": first,
        "last": last,
        "threshold": threshold,
        "window": window,
        "rows": tables,
        "tables": shown,
    }


NAME_HEADER = "姓名 Name"


def named_agents(table: tuple[list[str], list[list[Any]]], agents: AgentNames):
    """A table whose first column is an agent's extension, with the person's name before it."""
    headers, rows = table
    return [NAME_HEADER, *headers], [[agents.name(row[0]) or "", *row] for row in rows]


@router.get("/supervisor/kpis")
def kpis_page(
    request: Request,
    user: Supervisor,
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    data = kpi_data(request, since, until)
    days, agents = data["rows"]["day"], data["rows"]["agent"]
    charts = {
        "day": bar_chart(
            [row.key[5:] for row in days],
            [("呼入 Offered", "offered", [r.offered for r in days]),
             ("接通 Answered", "answered", [r.answered for r in days])],
            [r.service_level for r in days],
        ),
        "agent": bar_chart(
            [data["agents"].label(row.key) for row in agents],
            [("接通 Answered", "answered", [r.answered for r in agents])],
        ),
    }  # fmt: skip
    context = data | {"charts": charts, "table_titles": KPI_TABLE_TITLES}
    return page(request, user, "supervisor_kpis.html", context)


@router.get("/supervisor/kpis/export")
def kpis_export(
    request: Request,
    runtime: RuntimeDep,
    user: Supervisor,
    table: Literal["day", "agent", "queue", "campaigns", "agent_time", "quality"],
    fmt: Annotated[Literal["xlsx", "csv"], Query(alias="format")],
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
) -> Response:
    data = kpi_data(request, since, until)
    headers, rows = data["tables"][table]
    period = f"{data['first']:%Y%m%d}-{data['last']:%Y%m%d}"
    with runtime.sessions.begin() as session:
        audit.record(
            session,
            user=user,
            action="export",
            subject=("kpis", table),
            client=audit.client_of(request),
            details={"format": fmt, "from": str(data["first"]), "to": str(data["last"]),
                     "rows": len(rows)},
        )  # fmt: skip
    name = f"kpis-{table}-{period}.{fmt}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        return Response(
            to_csv(headers, rows), media_type="text/csv; charset=utf-8", headers=disposition
        )
    return Response(to_xlsx(table, headers, rows), media_type=XLSX, headers=disposition)


@router.get("/supervisor/settings")
def settings_page(request: Request, user: Supervisor, done: bool = False) -> Response:
    return settings_form(request, user, {}, done=done)


def settings_form(
    request: Request,
    user: SignedInUser,
    errors: dict[str, str],
    done: bool = False,
    typed: dict[str, str] | None = None,
) -> Response:
    """The settings page; after a refused form, ``typed`` holds what was typed, shown again in
    place of the stored values (the settings form's keys, or ``word`` for a watch word)."""
    with runtime_of(request).sessions() as session:
        values = all_settings(session)
        words = flags.watch_words(session)
    context = {"values": values, "words": words, "specs": SPECS, "errors": errors, "done": done,
               "admin_only": ADMIN_SETTINGS, "typed": typed or {}}  # fmt: skip
    response = page(request, user, "supervisor_settings.html", context)
    if errors:
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response


@router.post("/supervisor/settings")
async def save_settings(request: Request, runtime: RuntimeDep, user: Supervisor) -> Response:
    form = await request.form()
    keys = [k for k in SPECS if k in form and (user.role == "admin" or k not in ADMIN_SETTINGS)]
    errors: dict[str, str] = {}
    values = {}
    for key in keys:
        try:
            values[key] = parse_setting(key, str(form[key]))
        except UserInputError as exc:
            errors |= exc.errors
    if errors:
        return settings_form(request, user, errors, typed={k: str(form[k]) for k in keys})
    with runtime.sessions.begin() as session:
        for key, value in values.items():
            set_setting(session, key, value, by=user.username)
    return RedirectResponse("/supervisor/settings?done=true", status.HTTP_303_SEE_OTHER)


@router.post("/supervisor/watch-words")
def add_word(
    request: Request,
    runtime: RuntimeDep,
    user: Supervisor,
    word: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    try:
        with runtime.sessions.begin() as session:
            flags.add_watch_word(session, word, by=user.username)
    except UserInputError as exc:
        return settings_form(request, user, exc.errors, typed={"word": word})
    return RedirectResponse("/supervisor/settings?done=true", status.HTTP_303_SEE_OTHER)


@router.post("/supervisor/watch-words/remove")
def remove_word(
    request: Request,
    runtime: RuntimeDep,
    user: Supervisor,
    word: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    with runtime.sessions.begin() as session:
        flags.remove_watch_word(session, word)
    return RedirectResponse("/supervisor/settings?done=true", status.HTTP_303_SEE_OTHER)
