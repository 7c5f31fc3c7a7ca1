"""The supervisors' pages: the calls, one call with its audio and transcript, complaints and
visit opinions, the KPIs, and their settings. Supervisors and admins only; agents get 403.

Routes (browser pages, left out of the OpenAPI document):

- ``GET /supervisor/calls``: every call, filtered, newest first, paged by key.
- ``GET /supervisor/calls/{call_id}``: one call, its recordings, transcript and flags
  (``?t=`` starts the audio at a moment, ``?q=`` marks the lines holding those words).
- ``GET /supervisor/flags``: where watch words were said; ``POST /supervisor/watch-words``
  (and ``/remove``): the list of watch words.
- ``GET /supervisor/complaints``, ``GET /supervisor/complaints/{id}``,
  ``POST /supervisor/complaints/{id}/{assign|escalate|resolve}``; ``GET /supervisor/visits``.
- ``GET /supervisor/kpis``, ``GET /supervisor/kpis/export?table=…&format=xlsx|csv``
  (every export audited); ``GET/POST /supervisor/settings``.
- ``GET /supervisor/recordings/{recording_id}/audio``: the recording, by database id, with
  HTTP Range (Starlette's ``FileResponse`` answers 206 for ``Range: bytes=...``); the path is
  confined to the recordings folder. A playback (a request from the first byte) and every
  download (``?download=1``) go to the audit log.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm_bridge.accounts import auth
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.accounts.users import UserInputError
from crm_bridge.calls.call_log import CallFilter
from crm_bridge.calls.recordings import RecordingsRoot, for_log
from crm_bridge.calls.search import CallSearch, Cursor, customer_names, search_calls
from crm_bridge.customers.card import CustomerCard, build_cards
from crm_bridge.db.models import (
    Call,
    CallFlag,
    CallNote,
    Complaint,
    Recording,
    RecordingDeletion,
    TranscriptSegment,
)
from crm_bridge.pops.work import WRAPUP_LABELS, notes_by_linkedid
from crm_bridge.speech.transcripts import SegmentHit, search_segments, segments_of_call
from crm_bridge.supervision import audit, complaints, flags, kpis
from crm_bridge.supervision.flags import flags_of_call
from crm_bridge.supervision.settings import (
    SPECS,
    all_settings,
    get_setting,
    parse_setting,
    set_setting,
)
from crm_bridge.web.charts import bar_chart
from crm_bridge.web.exports import to_csv, to_xlsx
from crm_bridge.web.local_days import form_days, utc_range
from crm_bridge.web.pages import MAX_ROW_ID, PAGE_HEADERS, ROLE_LABELS, TEMPLATES_DIR, RowId

SUPERVISOR_ROLES = ("supervisor", "admin")
NO_RECORDING = "录音不存在 / No such recording"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
KPI_TABLE_TITLES = {
    "day": "按日 By day",
    "agent": "按坐席 By agent",
    "queue": "按队列 By queue",
    "campaigns": "外呼活动 Campaign results",
}
ADMIN_SETTINGS = frozenset({"recording_retention_days", "transcript_retention_days"})
"""Retention is the administrator's to set; supervisors see it."""
SPEAKER_LABELS = {"agent": "坐席 Agent", "customer": "客户 Customer", "mixed": "双方 Both"}
NO_COMPLAINT = "没有该投诉 / No such complaint"
LIST_PAGE = 50
WORD_HITS = 1000
"""A words-said search looks at this many matching segments, newest calls first."""
COMPLAINT_FILTERS = {
    "open": complaints.OPEN_STATUSES,
    "resolved": ("resolved", "closed"),
    "all": ("open", "in_progress", "resolved", "closed"),
}
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
    ("/supervisor/settings", "设置", "Settings"),
)

Supervisor = Annotated[SignedInUser, Depends(auth.require_role(*SUPERVISOR_ROLES))]

log = logging.getLogger(__name__)


def recording_file(recordings_dir: Path, relative: str) -> Path:
    """The file of a recording, refusing any path that leaves the recordings folder (``..``,
    an absolute path, a symbolic link pointing out, a NUL): 404, as for a file that is not
    there (see :meth:`~crm_bridge.calls.recordings.RecordingsRoot.file`)."""
    found = RecordingsRoot(recordings_dir).existing_file(relative)
    if found is None:
        log.warning("recording not served (missing or outside the folder): %s", for_log(relative))
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_RECORDING)
    return found


def supervisor_router() -> APIRouter:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    router = APIRouter(include_in_schema=False)

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
            "zone": request.app.state.runtime.settings.zone,
            "directions": DIRECTIONS,
            "dispositions": DISPOSITIONS,
            **context,
        }
        return templates.TemplateResponse(
            request, name, context, headers=SUPERVISOR_PAGE_HEADERS
        )

    @router.get("/supervisor/calls")
    def calls_page(
        request: Request,
        user: Supervisor,
        since: Annotated[str, Query(max_length=10)] = "",
        until: Annotated[str, Query(max_length=10)] = "",
        agent: Annotated[str, Query(max_length=64)] = "",
        queue: Annotated[str, Query(max_length=64)] = "",
        number: Annotated[str, Query(max_length=64)] = "",
        customer: Annotated[str, Query(max_length=64)] = "",
        direction: Annotated[str, Query(max_length=8)] = "",
        disposition: Annotated[str, Query(max_length=16)] = "",
        flagged: bool = False,
        words: Annotated[str, Query(max_length=100)] = "",
        after: Annotated[str, Query(max_length=80)] = "",
    ) -> Response:
        runtime = request.app.state.runtime
        start, end = utc_range(*form_days(since, until), runtime.settings.zone)
        number_e164 = runtime.numbers.to_e164(number.strip()) if number.strip() else None
        search = CallSearch(
            calls=CallFilter(
                since=start,
                until=end,
                number=number_e164,
                agent=agent.strip() or None,
                disposition=disposition if disposition in DISPOSITIONS else None,
                direction=direction if direction in DIRECTIONS else None,
            ),
            queue=queue.strip() or None,
            customer=customer.strip() or None,
            flagged=flagged,
        )
        cursor = _cursor(after)
        with runtime.sessions() as session:
            hits = first_hit_per_call(search_segments(session, words, limit=WORD_HITS))
            if words.strip():
                search = dataclasses.replace(search, call_ids=frozenset(hits))
            found = search_calls(session, search, after=cursor)
            names = customer_names(session, {c.customer_id for c in found.calls if c.customer_id})
        form = {
            "since": since, "until": until, "agent": agent, "queue": queue, "number": number,
            "customer": customer, "direction": direction, "disposition": disposition,
            "flagged": flagged, "words": words,
        }  # fmt: skip
        context = {"found": found, "names": names, "form": form, "first_page": cursor is None,
                   "hits": hits}  # fmt: skip
        return page(request, user, "supervisor_calls.html", context)

    @router.get("/supervisor/calls/{call_id}")
    def call_page(
        request: Request,
        call_id: RowId,
        user: Supervisor,
        t: Annotated[float | None, Query(ge=0, le=86_400)] = None,
        q: Annotated[str, Query(max_length=100)] = "",
    ) -> Response:
        runtime = request.app.state.runtime
        zone = runtime.settings.zone
        with runtime.sessions() as session:
            view = call_view(session, call_id, today=datetime.now(zone).date(), zone=zone)
            if view is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail="没有该通话 / No such call")
        context = {
            "view": view,
            "start_at": t,
            "query": q.strip(),
            "wrapup_labels": WRAPUP_LABELS,
            "speaker_labels": SPEAKER_LABELS,
        }
        return page(request, user, "supervisor_call.html", context)

    @router.get("/supervisor/recordings/{recording_id}/audio")
    def recording_audio(
        request: Request, recording_id: RowId, user: Supervisor, download: bool = False
    ) -> Response:
        runtime = request.app.state.runtime
        with runtime.sessions.begin() as session:  # reads, then audits
            recording = session.get(Recording, recording_id)
            if recording is None or _deleted(session, recording_id):
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_RECORDING)
            path = recording_file(runtime.settings.recordings_dir, recording.path)
            byte_range = request.headers.get("range", "")
            if download or not byte_range or byte_range.replace(" ", "").startswith("bytes=0-"):
                audit.record(
                    session,
                    user=user,
                    action="download" if download else "play",
                    subject=("recording", recording_id),
                    client=audit.client_of(request),
                    details={"call_id": recording.call_id},
                )
        filename = f"call-{recording.call_id}-{recording_id}{path.suffix}"
        return FileResponse(
            path,
            media_type="audio/wav" if path.suffix.lower() == ".wav" else None,
            filename=filename if download else None,
            content_disposition_type="attachment" if download else "inline",
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/supervisor/complaints")
    def complaints_page(
        request: Request,
        user: Supervisor,
        status_filter: Annotated[str, Query(alias="status", max_length=16)] = "open",
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> Response:
        statuses = COMPLAINT_FILTERS.get(status_filter, COMPLAINT_FILTERS["open"])
        with request.app.state.runtime.sessions() as session:
            rows, total = complaints.list_complaints(
                session, statuses, limit=LIST_PAGE, offset=(page_no - 1) * LIST_PAGE
            )
        context = {
            "rows": rows,
            "total": total,
            "page_no": page_no,
            "pages": max(1, -(-total // LIST_PAGE)),
            "status_filter": status_filter,
            "status_labels": complaints.STATUS_LABELS,
        }
        return page(request, user, "supervisor_complaints.html", context)

    def complaint_page(
        request: Request, user: SignedInUser, complaint_id: int, errors: dict[str, str]
    ) -> Response:
        with request.app.state.runtime.sessions() as session:
            complaint = session.get(Complaint, complaint_id)
            if complaint is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_COMPLAINT)
            context = {
                "complaint": complaint,
                "customer": complaint.customer,
                "events": complaints.history(session, complaint_id),
                "campaigns": complaints.follow_up_campaigns(session),
                "errors": errors,
                "status_labels": complaints.STATUS_LABELS,
                "action_labels": complaints.ACTION_LABELS,
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
        complaint_id: RowId,
        action: Literal["assign", "escalate", "resolve"],
        user: Supervisor,
        who: Annotated[str, Form(max_length=256)] = "",
        text: Annotated[str, Form(max_length=4096)] = "",
        follow_up_at: Annotated[str, Form(max_length=32)] = "",
        campaign: Annotated[str, Form(max_length=16)] = "",
    ) -> Response:
        zone = request.app.state.runtime.settings.zone
        try:
            with request.app.state.runtime.sessions.begin() as session:
                if action == "assign":
                    complaints.assign(session, complaint_id, actor=user.username, handler=who)
                elif action == "escalate":
                    complaints.escalate(
                        session, complaint_id, actor=user.username, to=who, comment=text
                    )
                else:
                    complaints.resolve(
                        session,
                        complaint_id,
                        actor=user.username,
                        resolution=text,
                        follow_up_at=_local_moment(follow_up_at, zone),
                        follow_up_campaign_id=_row_id(campaign),
                    )
        except UserInputError as exc:
            return complaint_page(request, user, complaint_id, exc.errors)
        return RedirectResponse(
            f"/supervisor/complaints/{complaint_id}", status.HTTP_303_SEE_OTHER
        )

    @router.get("/supervisor/visits")
    def visits_page(
        request: Request,
        user: Supervisor,
        since: Annotated[str, Query(max_length=10)] = "",
        until: Annotated[str, Query(max_length=10)] = "",
        opinions: bool = False,
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> Response:
        runtime = request.app.state.runtime
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
        zone = request.app.state.runtime.settings.zone
        first, last = form_days(since, until)
        today = datetime.now(zone).date()
        last = last or today
        first = first or last - timedelta(days=6)
        start, end = utc_range(first, last, zone)
        assert start is not None and end is not None
        period = kpis.Period(start, end, zone)
        with request.app.state.runtime.sessions() as session:
            threshold = get_setting(session, "service_level_seconds")
            window = get_setting(session, "fcr_window_hours")
            tables = {
                dimension: kpis.inbound_kpis(
                    session, dimension, period, threshold_seconds=threshold,
                    fcr_window_hours=window,
                )
                for dimension in kpis.DIMENSIONS
            }  # fmt: skip
            campaigns = kpis.campaign_results(session, period)
        shown = {d: kpis.inbound_table(d, rows) for d, rows in tables.items()}
        shown["campaigns"] = kpis.campaign_table(campaigns)
        return {
            "first": first,
            "last": last,
            "threshold": threshold,
            "window": window,
            "rows": tables,
            "tables": shown,
        }

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
                [row.key for row in agents],
                [("接通 Answered", "answered", [r.answered for r in agents])],
            ),
        }  # fmt: skip
        context = data | {"charts": charts, "table_titles": KPI_TABLE_TITLES}
        return page(request, user, "supervisor_kpis.html", context)

    @router.get("/supervisor/kpis/export")
    def kpis_export(
        request: Request,
        user: Supervisor,
        table: Literal["day", "agent", "queue", "campaigns"],
        fmt: Annotated[Literal["xlsx", "csv"], Query(alias="format")],
        since: Annotated[str, Query(max_length=10)] = "",
        until: Annotated[str, Query(max_length=10)] = "",
    ) -> Response:
        data = kpi_data(request, since, until)
        headers, rows = data["tables"][table]
        period = f"{data['first']:%Y%m%d}-{data['last']:%Y%m%d}"
        with request.app.state.runtime.sessions.begin() as session:
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
        request: Request, user: SignedInUser, errors: dict[str, str], done: bool = False
    ) -> Response:
        with request.app.state.runtime.sessions() as session:
            values = all_settings(session)
            words = flags.watch_words(session)
        context = {"values": values, "words": words, "specs": SPECS, "errors": errors, "done": done,
                   "admin_only": ADMIN_SETTINGS}  # fmt: skip
        response = page(request, user, "supervisor_settings.html", context)
        if errors:
            response.status_code = status.HTTP_400_BAD_REQUEST
        return response

    @router.post("/supervisor/settings")
    async def save_settings(request: Request, user: Supervisor) -> Response:
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
            return settings_form(request, user, errors)
        with request.app.state.runtime.sessions.begin() as session:
            for key, value in values.items():
                set_setting(session, key, value, by=user.username)
        return RedirectResponse("/supervisor/settings?done=true", status.HTTP_303_SEE_OTHER)

    @router.post("/supervisor/watch-words")
    def add_word(
        request: Request, user: Supervisor, word: Annotated[str, Form(max_length=256)] = ""
    ) -> Response:
        try:
            with request.app.state.runtime.sessions.begin() as session:
                flags.add_watch_word(session, word, by=user.username)
        except UserInputError as exc:
            return settings_form(request, user, exc.errors)
        return RedirectResponse("/supervisor/settings?done=true", status.HTTP_303_SEE_OTHER)

    @router.post("/supervisor/watch-words/remove")
    def remove_word(
        request: Request, user: Supervisor, word: Annotated[str, Form(max_length=256)] = ""
    ) -> Response:
        with request.app.state.runtime.sessions.begin() as session:
            flags.remove_watch_word(session, word)
        return RedirectResponse("/supervisor/settings?done=true", status.HTTP_303_SEE_OTHER)

    @router.get("/supervisor/flags")
    def flags_page(
        request: Request,
        user: Supervisor,
        page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
    ) -> Response:
        with request.app.state.runtime.sessions() as session:
            rows, total = flags.list_flags(
                session, limit=LIST_PAGE, offset=(page_no - 1) * LIST_PAGE
            )
            words = flags.watch_words(session)
        context = {
            "rows": rows,
            "total": total,
            "words": words,
            "page_no": page_no,
            "pages": max(1, -(-total // LIST_PAGE)),
        }
        return page(request, user, "supervisor_flags.html", context)

    return router


def _row_id(text: str) -> int | None:
    """The id a form field holds, or None for anything else: ``str.isdigit`` alone lets
    through "²", which ``int`` refuses, and numbers past the database's integers."""
    if text.isascii() and text.isdigit() and int(text) <= MAX_ROW_ID:
        return int(text)
    return None


def _local_moment(text: str, zone: tzinfo) -> datetime | None:
    """A ``datetime-local`` form field, read in the center's zone."""
    if not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserInputError({"follow_up_at": "时间格式无效 / Not a date and time"}) from None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class RecordingView:
    id: int
    status: str | None
    duration_seconds: float | None
    deleted_at: datetime | None


@dataclass(frozen=True)
class CallView:
    """Everything the call page shows of one call."""

    call: Call
    recordings: list[RecordingView]
    card: CustomerCard | None
    note: CallNote | None
    complaints: list[Complaint]
    segments: dict[int, list[TranscriptSegment]]
    """The transcript of each recording, by recording id, in time order."""
    flags: list[CallFlag]


def call_view(session: Session, call_id: int, *, today: date, zone: tzinfo) -> CallView | None:
    call = session.get(Call, call_id)
    if call is None:
        return None
    deletions = {
        row.recording_id: row.deleted_at
        for row in session.scalars(
            select(RecordingDeletion)
            .join(Recording, Recording.id == RecordingDeletion.recording_id)
            .where(Recording.call_id == call_id)
        )
    }
    recordings = [
        RecordingView(r.id, r.status, r.duration_seconds, deletions.get(r.id))
        for r in session.scalars(
            select(Recording).where(Recording.call_id == call_id).order_by(Recording.id)
        )
    ]
    customers = [call.customer_id] if call.customer_id else []
    cards = build_cards(session, customers, today=today, zone=zone)
    complaints = session.scalars(
        select(Complaint)
        .where(or_(Complaint.call_id == call_id, Complaint.linkedid == call.linkedid))
        .order_by(Complaint.id)
    )
    segments: dict[int, list[TranscriptSegment]] = {}
    for segment in segments_of_call(session, call_id):
        segments.setdefault(segment.recording_id, []).append(segment)
    return CallView(
        call=call,
        recordings=recordings,
        card=cards[0] if cards else None,
        note=notes_by_linkedid(session, [call.linkedid]).get(call.linkedid),
        complaints=list(complaints),
        segments=segments,
        flags=flags_of_call(session, call_id),
    )


def first_hit_per_call(hits: list[SegmentHit]) -> dict[int, SegmentHit]:
    """The earliest matching segment of each call (hits come in call order, then by time)."""
    first: dict[int, SegmentHit] = {}
    for hit in hits:
        if hit.call_id not in first or hit.start_seconds < first[hit.call_id].start_seconds:
            first[hit.call_id] = hit
    return first


def _cursor(text: str) -> Cursor | None:
    if not text:
        return None
    try:
        return Cursor.decode(text)
    except ValueError:
        raise HTTPException(422, detail="分页参数无效 / Bad page cursor") from None


def _deleted(session: Session, recording_id: int) -> bool:
    return session.get(RecordingDeletion, recording_id) is not None
