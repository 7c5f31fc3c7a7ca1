"""The supervisors' pages of calls: the call list, one call with its audio, transcript and
flags, the recordings' audio, and the watch words and where they were said.

- ``GET /supervisor/calls``: every call, filtered, newest first, paged by key.
- ``GET /supervisor/calls/{call_id}``: one call, its recordings, transcript and flags
  (``?t=`` starts the audio at a moment, ``?q=`` marks the lines holding those words), and the
  quality-review scorecards beside the player: the signed-in reviewer's to fill or change,
  the others' to read.
- ``POST /supervisor/calls/{call_id}/review``: save the reviewer's own scorecard (audited).
- ``GET /supervisor/flags``: where watch words were said; ``POST /supervisor/watch-words``
  (and ``/remove``): the list of watch words.
- ``GET /supervisor/recordings/{recording_id}/audio``: the recording, by database id, with
  HTTP Range (Starlette's ``FileResponse`` answers 206 for ``Range: bytes=...``); the path is
  confined to the recordings folder. A playback (a request from the first byte) and every
  download (``?download=1``) go to the audit log.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.accounts.people import agent_names, extensions_named
from crm_bridge.accounts.users import UserInputError
from crm_bridge.calls.call_log import CallFilter, NumberRules
from crm_bridge.calls.notes import WRAPUP_LABELS, notes_by_linkedid
from crm_bridge.calls.recordings import RecordingsRoot, for_log
from crm_bridge.calls.search import (
    CallSearch,
    Cursor,
    customer_names,
    search_calls,
)
from crm_bridge.customers.card import CustomerCard, build_cards
from crm_bridge.customers.numbers import PhoneKind, normalize_phone
from crm_bridge.customers.search import customer_ids
from crm_bridge.db.models import (
    Call,
    CallFlag,
    CallNote,
    Complaint,
    QualityReview,
    Recording,
    RecordingDeletion,
    TranscriptSegment,
)
from crm_bridge.pops.work import CATEGORY_LABELS, SEVERITY_LABELS
from crm_bridge.quality import scorecard
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.speech.transcripts import SegmentHit, search_segments, segments_of_call
from crm_bridge.supervision import flags
from crm_bridge.supervision.flags import flags_of_call
from crm_bridge.supervision.page_kit import DIRECTIONS, DISPOSITIONS, LIST_PAGE, Supervisor, page
from crm_bridge.web.local_days import form_days, utc_range
from crm_bridge.web.pages import RowId

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

NO_RECORDING = "录音不存在 / No such recording"


SPEAKER_LABELS = {"agent": "坐席 Agent", "customer": "客户 Customer", "mixed": "双方 Both"}


WORD_HITS = 1000
"""A words-said search looks at this many matching segments, newest calls first."""


def recording_file(recordings_dir: Path, relative: str) -> Path:
    """The file of a recording, refusing any path that leaves the recordings folder (``..``,
    an absolute path, a symbolic link pointing out, a NUL): 404, as for a file that is not
    there (see :meth:`~crm_bridge.calls.recordings.RecordingsRoot.file`)."""
    found = RecordingsRoot(recordings_dir).existing_file(relative)
    if found is None:
        log.warning("recording not served (missing or outside the folder): %s", for_log(relative))
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_RECORDING)
    return found


MIN_NUMBER_DIGITS = 3
"""A number typed in part must hold this many digits (fewer would match nearly every call)."""


def number_filter(numbers: NumberRules, typed: str) -> tuple[str | None, str | None]:
    """A whole number (one that is E.164 once normalised) is matched exactly; anything else
    by the digits it holds: the last four, a prefix, an extension."""
    typed = typed.strip()
    if not typed:
        return None, None
    if normalize_phone(typed, numbers.region, numbers.outside_line_prefix).kind is PhoneKind.E164:
        return numbers.to_e164(typed), None
    digits = "".join(ch for ch in typed if ch.isdigit())
    return None, digits if len(digits) >= MIN_NUMBER_DIGITS else None


def _agent_unknown(session: Session, typed: str, agents: frozenset[str] | None) -> list[str]:
    """Why an agent filter matches no call: no one is called so, or they never took one."""
    if not typed.strip() or agents is None:
        return []
    if agents == {typed.strip()} and not extensions_named(session, typed):
        if session.scalar(select(Call.id).where(Call.agent == typed.strip()).limit(1)) is None:
            return [f"没有姓名、用户名或分机含“{typed.strip()}”的坐席 / No agent has "
                    f"“{typed.strip()}” in their name, user name or extension"]  # fmt: skip
        return []
    if session.scalar(select(Call.id).where(Call.agent.in_(sorted(agents))).limit(1)) is None:
        return [f"坐席“{typed.strip()}”没有接过通话 / Agent “{typed.strip()}” never took a call"]
    return []


def why_nothing_matched(
    session: Session,
    search: CallSearch,
    first: date | None,
    last: date | None,
    number: str,
    agent: str = "",
) -> list[str]:
    """What in the filters rules every call out, when something plainly does."""
    reasons = []
    if first and last and first > last:
        reasons.append(f"起始日期 {first} 晚于结束日期 {last} / The dates are reversed: "
                       f"{first} comes after {last}")  # fmt: skip
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.strip() and search.calls.number is None and len(digits) < MIN_NUMBER_DIGITS:
        reasons.append(f"号码至少填 {MIN_NUMBER_DIGITS} 位数字 / Give at least "
                       f"{MIN_NUMBER_DIGITS} digits of the number")  # fmt: skip
    reasons += _agent_unknown(session, agent, search.agents)
    if search.customer and not customer_ids(session, search.customer):
        reasons.append(f"没有客户的姓名或卡号是“{search.customer}”或以它开头 / No customer's "
                       f"name or card number is or begins with “{search.customer}”")  # fmt: skip
    return reasons


@router.get("/supervisor/calls")
def calls_page(
    request: Request,
    runtime: RuntimeDep,
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
    first_day, last_day = form_days(since, until)
    start, end = utc_range(first_day, last_day, runtime.settings.zone)
    number_e164, number_digits = number_filter(runtime.numbers, number)
    search = CallSearch(
        calls=CallFilter(
            since=start,
            until=end,
            number=number_e164,
            disposition=disposition if disposition in DISPOSITIONS else None,
            direction=direction if direction in DIRECTIONS else None,
        ),
        queue=queue.strip() or None,
        customer=customer.strip() or None,
        number_digits=number_digits,
        flagged=flagged,
    )
    cursor = _cursor(after)
    with runtime.sessions() as session:
        if agent.strip():
            named = extensions_named(session, agent)
            search = dataclasses.replace(search, agents=frozenset({agent.strip(), *named}))
        hits = first_hit_per_call(search_segments(session, words, limit=WORD_HITS))
        if words.strip():
            search = dataclasses.replace(search, call_ids=frozenset(hits))
        if number.strip() and number_e164 is None and number_digits is None:
            search = dataclasses.replace(search, call_ids=frozenset())  # too few digits
        found = search_calls(session, search, after=cursor)
        names = customer_names(session, {c.customer_id for c in found.calls if c.customer_id})
        why_none = [] if found.calls else why_nothing_matched(
            session, search, first_day, last_day, number, agent
        )  # fmt: skip
        agents = agent_names(session)
    form = {
        "since": since, "until": until, "agent": agent, "queue": queue, "number": number,
        "customer": customer, "direction": direction, "disposition": disposition,
        "flagged": flagged, "words": words,
    }  # fmt: skip
    context = {"found": found, "names": names, "form": form, "first_page": cursor is None,
               "hits": hits, "why_none": why_none, "agents": agents}  # fmt: skip
    return page(request, user, "supervisor_calls.html", context)


@router.get("/supervisor/calls/{call_id}")
def call_page(
    request: Request,
    call_id: RowId,
    user: Supervisor,
    t: Annotated[float | None, Query(ge=0, le=86_400)] = None,
    q: Annotated[str, Query(max_length=100)] = "",
    saved: bool = False,
) -> Response:
    return call_page_with(request, user, call_id, start_at=t, query=q.strip(), saved=saved)


def call_page_with(
    request: Request,
    user: SignedInUser,
    call_id: int,
    *,
    start_at: float | None = None,
    query: str = "",
    saved: bool = False,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
) -> Response:
    """The call page; after a refused scorecard, its errors beside the fields, as typed."""
    zone = runtime_of(request).settings.zone
    with runtime_of(request).sessions() as session:
        view = call_view(session, call_id, today=datetime.now(zone).date(), zone=zone)
        if view is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=scorecard.NO_CALL)
        reviews = scorecard.reviews_of_call(session, call_id)
    mine = next((r for r in reviews if r.reviewer == user.username), None)
    context = {
        "view": view,
        "start_at": start_at,
        "query": query,
        "wrapup_labels": WRAPUP_LABELS,
        "speaker_labels": SPEAKER_LABELS,
        "category_labels": CATEGORY_LABELS,
        "severity_labels": SEVERITY_LABELS,
        "criteria": scorecard.CRITERIA,
        "max_total": scorecard.MAX_TOTAL,
        "my_review": mine,
        "other_reviews": [r for r in reviews if r is not mine],
        "review_form": typed if typed is not None else _review_form(mine),
        "review_errors": errors or {},
        "review_saved": saved,
    }
    response = page(request, user, "supervisor_call.html", context)
    if errors:
        response.status_code = status.HTTP_400_BAD_REQUEST
    return response


def _review_form(review: QualityReview | None) -> dict[str, str]:
    if review is None:
        return {}
    return {key: str(value) for key, value in review.scores.items()} | {
        "comment": review.comment or ""
    }


REVIEW_FIELDS = frozenset(c.key for c in scorecard.CRITERIA) | {"comment"}
MAX_REVIEW_FIELD = 4096


@router.post("/supervisor/calls/{call_id}/review")
async def save_review(
    request: Request, runtime: RuntimeDep, call_id: RowId, user: Supervisor
) -> Response:
    form = await request.form()
    typed = {k: str(form.get(k, ""))[:MAX_REVIEW_FIELD] for k in REVIEW_FIELDS}
    try:
        with runtime.sessions.begin() as session:
            review = scorecard.save_review(
                session, call_id, reviewer=user.username, typed=typed, comment=typed["comment"]
            )
            audit.record(
                session, user=user, action="quality_review", subject=("call", call_id),
                client=audit.client_of(request),
                details={"review": review.id, "total": review.total, "scores": review.scores},
            )  # fmt: skip
    except UserInputError as exc:
        if "call" in exc.errors:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=scorecard.NO_CALL) from None
        return call_page_with(request, user, call_id, errors=exc.errors, typed=typed)
    return RedirectResponse(
        f"/supervisor/calls/{call_id}?saved=true#scorecard", status.HTTP_303_SEE_OTHER
    )


@router.get("/supervisor/recordings/{recording_id}/audio")
def recording_audio(
    request: Request,
    runtime: RuntimeDep,
    recording_id: RowId,
    user: Supervisor,
    download: bool = False,
) -> Response:
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


@router.get("/supervisor/flags")
def flags_page(
    request: Request,
    runtime: RuntimeDep,
    user: Supervisor,
    page_no: Annotated[int, Query(alias="page", ge=1, le=100_000)] = 1,
) -> Response:
    with runtime.sessions() as session:
        rows, total = flags.list_flags(session, limit=LIST_PAGE, offset=(page_no - 1) * LIST_PAGE)
        words = flags.watch_words(session)
    context = {
        "rows": rows,
        "total": total,
        "words": words,
        "page_no": page_no,
        "pages": max(1, -(-total // LIST_PAGE)),
    }
    return page(request, user, "supervisor_flags.html", context)


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
