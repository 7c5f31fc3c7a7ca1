"""Today's missed and abandoned inbound calls still to call back, and who took each.

A caller who hung up in the queue (abandoned) or whom nobody answered (no answer) is to be
called back, once per number however many times they tried today, until one of these: an
outbound call was placed to the number after their last missed call, they got through on a
later inbound call, or the agent who took the call back placed it from ``/me/callbacks``.

Taking is one row per call in ``callback_claims`` (unique ``call_id``), inserted with
``ON CONFLICT DO NOTHING``: of two agents taking the same call at once, one insert wins and
both read the same taker back.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from crm_bridge.db.dialect import dialect_insert
from crm_bridge.db.models import Call, CallbackClaim, DoNotCall
from crm_bridge.supervision.kpis import Period

MISSED = ("abandoned", "no_answer")
MOST_SHOWN = 500
"""The most missed calls of one day read for the list (a bad day of a big center)."""
NOT_A_CALLBACK = "没有这个待回拨电话 / No such call to call back"
ON_DO_NOT_CALL = "此号码在免打扰名单中，不能回拨 / This number is on the do-not-call list"


@dataclass(frozen=True)
class Callback:
    call: Call
    """The number's latest missed call of the day."""
    tries: int
    """How many missed calls the number made in the day."""
    taken_by: str | None
    taken_at: datetime | None


class TakenByOther(Exception):
    def __init__(self, taken_by: str) -> None:
        super().__init__(taken_by)
        self.taken_by = taken_by


def callbacks(session: Session, period: Period) -> list[Callback]:
    """The calls of ``period`` to call back, newest first."""
    missed = list(session.scalars(
        select(Call).where(
            Call.offered_at >= period.since, Call.offered_at < period.until,
            Call.direction == "inbound", Call.disposition.in_(MISSED), Call.caller.startswith("+"),
        ).order_by(Call.offered_at.desc(), Call.id.desc()).limit(MOST_SHOWN)
    ))  # fmt: skip
    tries = Counter(call.caller for call in missed)
    latest = {call.caller: call for call in reversed(missed)}  # newest wins
    reached = _reached_since(session, period, set(latest))
    claims = {
        claim.call_id: claim
        for claim in session.scalars(
            select(CallbackClaim).where(CallbackClaim.call_id.in_([c.id for c in missed]))
        )
    }
    out = []
    for number, call in latest.items():
        claim = claims.get(call.id)
        if reached.get(number, period.since) > call.offered_at:
            continue
        if claim is not None and claim.called_back_at is not None:
            continue
        taken = (claim.taken_by, claim.taken_at) if claim else (None, None)
        out.append(Callback(call, tries[number], *taken))
    return sorted(out, key=lambda c: (c.call.offered_at, c.call.id), reverse=True)


def _reached_since(session: Session, period: Period, numbers: set[str]) -> dict[str, datetime]:
    """For each number, the last time in the period it was called, or got through."""
    if not numbers:
        return {}
    rows = session.execute(
        select(Call.direction, Call.caller, Call.callee, Call.offered_at).where(
            Call.offered_at >= period.since,
            or_(
                and_(Call.direction == "outbound", Call.callee.in_(numbers)),
                and_(Call.direction == "inbound", Call.disposition == "answered",
                     Call.caller.in_(numbers)),
            ),
        )
    )  # fmt: skip
    last: dict[str, datetime] = {}
    for direction, caller, callee, at in rows:
        number = callee if direction == "outbound" else caller
        if at is not None and (number not in last or at > last[number]):
            last[number] = at
    return last


def callback_call(session: Session, call_id: int) -> Call:
    """The missed inbound call ``call_id``; LookupError for any other call."""
    call = session.get(Call, call_id)
    if call is None or call.direction != "inbound" or call.disposition not in MISSED:
        raise LookupError(NOT_A_CALLBACK)
    if not (call.caller or "").startswith("+"):
        raise LookupError(NOT_A_CALLBACK)
    return call


def take(session: Session, call_id: int, username: str) -> str:
    """Take the call back for ``username``; returns who has it (maybe someone else)."""
    callback_call(session, call_id)
    insert = dialect_insert(session)(CallbackClaim).values(
        call_id=call_id, taken_by=username, taken_at=datetime.now(UTC)
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["call_id"]))
    return session.scalars(
        select(CallbackClaim.taken_by).where(CallbackClaim.call_id == call_id)
    ).one()


def on_do_not_call(session: Session, number_e164: str) -> bool:
    found = select(DoNotCall.id).where(DoNotCall.number_e164 == number_e164)
    return session.scalar(found) is not None


def start_call_back(session: Session, call_id: int, username: str) -> Call:
    """Before the call back is placed: the call, taken by ``username`` (taken now when nobody
    had it). Raises :class:`TakenByOther`, or LookupError when the number is on the
    do-not-call list or the call is no callback."""
    call = callback_call(session, call_id)
    if on_do_not_call(session, call.caller or ""):
        raise LookupError(ON_DO_NOT_CALL)
    taker = take(session, call_id, username)
    if taker != username:
        raise TakenByOther(taker)
    return call


def called_back(session: Session, call_id: int) -> None:
    """The call back was placed: the call leaves the list."""
    claim = session.scalars(select(CallbackClaim).where(CallbackClaim.call_id == call_id)).one()
    claim.called_back_at = datetime.now(UTC)
