"""The audit log: every playback, download and export of personal data, who, what, when and
from where.

:func:`record` is what other modules call, inside their own transaction. The log is read on
``GET /admin/audit`` (admins only, filters, newest first, paged by id). Nothing in the app
updates or deletes an entry, and the database refuses it too: migration 0005 puts a trigger on
``audit_log`` that aborts every UPDATE and DELETE (and TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from crm_bridge.accounts.auth import AdminUser
from crm_bridge.db.models import AuditEntry
from crm_bridge.runtime import RuntimeDep
from crm_bridge.web.local_days import form_days, utc_range
from crm_bridge.web.pages import (
    MAX_ROW_ID,
    PAGE_HEADERS,
    ROLE_LABELS,
    page_templates,
)

PAGE_SIZE = 100
ACTION_LABELS = {
    "play": "播放录音 Playback",
    "download": "下载录音 Download",
    "export": "导出 Export",
    "view_transcript": "查看转写 Transcript",
    "listen": "监听 Listen",
    "whisper": "耳语 Whisper",
    "barge": "强插 Barge",
    "supervise_failed": "监听未接通 Listen-in not placed",
    "customer_edit": "修改客户资料 Customer edited",
    "complaint_assign": "分派投诉 Complaint assigned",
    "complaint_escalate": "升级投诉 Complaint escalated",
    "quality_review": "质检评分 Quality review",
    "guardian_consent": "记录监护人同意 Guardian consent recorded",
    "guardian_consent_withdrawn": "撤销监护人同意 Guardian consent withdrawn",
}


class Actor(Protocol):
    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def client_of(request: Request) -> str | None:
    """The client address as the server sees it (behind a proxy: run with --proxy-headers)."""
    return request.client.host if request.client else None


def record(
    session: Session,
    *,
    user: Actor,
    action: str,
    subject: tuple[str, object],
    client: str | None,
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry (flushed in the caller's transaction). ``subject`` is (type, id)."""
    subject_type, subject_id = subject
    entry = AuditEntry(
        username=user.username,
        role=user.role,
        action=action,
        subject_type=subject_type,
        subject_id=None if subject_id is None else str(subject_id),
        client=client,
        details=details,
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True)
class AuditFilter:
    username: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _filtered(query: Select, flt: AuditFilter) -> Select:
    if flt.username:
        query = query.where(AuditEntry.username == flt.username)
    if flt.action:
        query = query.where(AuditEntry.action == flt.action)
    if flt.since:
        query = query.where(AuditEntry.at >= flt.since)
    if flt.until:
        query = query.where(AuditEntry.at < flt.until)
    return query


def read_entries(
    session: Session, flt: AuditFilter, *, before_id: int | None = None, limit: int = PAGE_SIZE
) -> tuple[list[AuditEntry], int | None]:
    """A page of entries, newest first, and the ``before_id`` of the next page (or None)."""
    query = _filtered(select(AuditEntry), flt)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    rows = list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more else None)


templates = page_templates()
router = APIRouter(include_in_schema=False)


@router.get("/admin/audit")
def audit_page(
    request: Request,
    runtime: RuntimeDep,
    admin: AdminUser,
    username: Annotated[str, Query(max_length=64)] = "",
    action: Annotated[str, Query(max_length=32)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    before: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
) -> Response:
    zone = runtime.settings.zone
    start, end = utc_range(*form_days(since, until), zone)
    flt = AuditFilter(username.strip() or None, action or None, start, end)
    with runtime.sessions() as session:
        entries, next_before = read_entries(session, flt, before_id=before)
    context = {
        "user": admin,
        "csrf_token": admin.csrf_token,
        "role_labels": ROLE_LABELS,
        "entries": entries,
        "next_before": next_before,
        "zone": zone,
        "actions": ACTION_LABELS,
        "form": {"username": username, "action": action, "since": since, "until": until},
    }
    return templates.TemplateResponse(request, "admin_audit.html", context, headers=PAGE_HEADERS)
