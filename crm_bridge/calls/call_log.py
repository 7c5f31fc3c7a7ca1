"""The call log: every call the tracker ends is written once, linked to its customer.

Idempotent by Linkedid: the ``calls.linkedid`` column is unique and the insert is
``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL alike), so a call reported again, by a replay
after a resync or by a second bridge instance, changes nothing.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Insert, Select, Update, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.calls.recordings import RecordingsRoot, link_recording
from crm_bridge.customers.numbers import PhoneKind, mask_phone, normalize_phone
from crm_bridge.db.models import Call, CallNote, Complaint, CustomerPhone, DialAttempt
from telephony.call_events import CallRecord, Direction

log = logging.getLogger(__name__)


def _utc(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


@dataclass(frozen=True)
class NumberRules:
    """How numbers that arrive from the PBX are read (the center's settings)."""

    region: str = "CN"
    outside_line_prefix: str | None = None

    def to_e164(self, raw: str | None) -> str | None:
        """E.164 for a phone number; an extension or a withheld id is kept as Asterisk gave it."""
        number = normalize_phone(raw, self.region, self.outside_line_prefix)
        if number.kind is PhoneKind.E164:
            return number.e164
        if number.kind is PhoneKind.WITHHELD:
            return None
        return raw


class CallLog:
    """Writes ended calls and answers queries on them."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        numbers: NumberRules,
        recordings: RecordingsRoot | None = None,
    ) -> None:
        """With ``recordings``, a call's recording is linked (and its transcription queued)
        in the same transaction as the call."""
        self._sessions = session_factory
        self._numbers = numbers
        self._recordings = recordings

    def record(self, call: CallRecord, *, reconciled: bool = False) -> int:
        """Store one ended call (once); return its row id. ``reconciled``: the call comes from
        Asterisk's own records, not from watching it (``crm_bridge/calls/cdr_reconcile.py``)."""
        caller = self._numbers.to_e164(call.caller)
        callee = self._numbers.to_e164(call.callee)
        customer_number = caller if call.direction is Direction.INBOUND else callee
        with self._sessions.begin() as session:
            connection = session.connection()
            customer_id = connection.scalar(
                _customer_of_call(), {"linkedid": call.linkedid, "number": customer_number}
            )
            values = {
                "linkedid": call.linkedid,
                "server": call.server,
                "direction": str(call.direction or Direction.INBOUND),
                "caller": caller,
                "caller_name": call.caller_name,
                "callee": callee,
                "queue": call.queue,
                "agent": call.agent,
                "agent_interface": call.agent_interface,
                "agents_rung": list(call.agents_rung),
                "disposition": str(call.disposition) if call.disposition else None,
                "hangup_cause": call.hangup_cause,
                "hangup_cause_text": call.hangup_cause_text,
                "offered_at": _utc(call.offered_at),
                "answered_at": _utc(call.answered_at),
                "ended_at": _utc(call.ended_at),
                "wait_seconds": call.wait_seconds,
                "talk_seconds": call.talk_seconds,
                "customer_id": customer_id,
                "campaign": call.campaign,
                "originate_action_id": call.originate_action_id,
                "transferred_to": call.transferred_to,
                "survey_score": call.survey_score,
                "end_reason": str(call.end_reason) if call.end_reason else None,
                "reconciled": reconciled,
                "created_at": datetime.now(UTC),
            }
            call_id = connection.scalar(_insert_call(connection.dialect.name), values)
            if call_id is None:
                call_id = _logged_before(session, call)
            complaints = {"of_call": call.linkedid, "new_call_id": call_id}
            connection.execute(_attach_complaints(), complaints)
            if self._recordings is not None and call.recording_path:
                link_recording(session, call_id, call.recording_path, self._recordings)
        log.info(
            "call %s logged: %s %s -> %s, %s",
            call.linkedid,
            values["direction"],
            mask_phone(caller),
            mask_phone(callee),
            values["disposition"],
        )
        return int(call_id)


# The statements of :meth:`CallLog.record`, built once with bound parameters and run on the
# session's connection: building a statement and its cache key for each call cost some 3 ms of
# Python a call, on the writer thread, while the event loop waited for the GIL behind it
# (``bench/pop_latency.py``).


@functools.cache
def _customer_of_call() -> Select:
    """The customer a call belongs to: the one the agent confirmed on it (``call_notes``),
    else the one a campaign called on it (the attempt whose ChannelId is its Linkedid), else
    the one customer holding its ``:number``; NULL for a number several customers share (a
    family phone: nobody is chosen here)."""
    confirmed = select(CallNote.customer_id).where(CallNote.linkedid == bindparam("linkedid"))
    called = select(DialAttempt.customer_id).where(DialAttempt.channel_id == bindparam("linkedid"))
    holders = select(case((func.count() == 1, func.min(CustomerPhone.customer_id)))).where(
        CustomerPhone.number_e164 == bindparam("number")
    )
    return select(
        func.coalesce(
            confirmed.limit(1).scalar_subquery(),
            called.limit(1).scalar_subquery(),
            holders.scalar_subquery(),
        )
    )


@functools.cache
def _insert_call(dialect: str) -> Insert:
    """The insert of a call, returning its id, or nothing when its Linkedid is logged."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(Call).on_conflict_do_nothing(index_elements=["linkedid"])
    return statement.returning(Call.id)


@functools.cache
def _attach_complaints() -> Update:
    """Complaints taken during the call get the id of its new ``calls`` row."""
    return (
        update(Complaint)
        .where(Complaint.linkedid == bindparam("of_call"), Complaint.call_id.is_(None))
        .values(call_id=bindparam("new_call_id"))
    )


def _logged_before(session: Session, call: CallRecord) -> int:
    """The id of the call already logged with ``call``'s Linkedid. Logged by another server,
    it is another call whose ids collide (two Asterisks without distinct ``systemname``):
    said loudly, since this one is then missing from the call log."""
    call_id, server = session.execute(
        select(Call.id, Call.server).where(Call.linkedid == call.linkedid)
    ).one()
    if server != call.server:
        log.error(
            "call %s of server %s not logged: server %s logged a call with the same Linkedid; "
            "give each Asterisk its own systemname (asterisk.conf) so their ids differ",
            call.linkedid,
            call.server,
            server,
        )
    return call_id


@dataclass(frozen=True)
class CallFilter:
    """Filters of ``GET /api/calls``; every field is optional."""

    since: datetime | None = None
    until: datetime | None = None
    number: str | None = None
    agent: str | None = None
    disposition: str | None = None
    direction: str | None = None


def with_call_filter(query: Select, flt: CallFilter) -> Select:
    """``query`` narrowed to the calls ``flt`` lets through (shared with the supervisors'
    search, ``crm_bridge/calls/search.py``)."""
    if flt.since is not None:
        query = query.where(Call.offered_at >= flt.since)
    if flt.until is not None:
        query = query.where(Call.offered_at < flt.until)
    if flt.number:
        query = query.where((Call.caller == flt.number) | (Call.callee == flt.number))
    if flt.agent:
        query = query.where(Call.agent == flt.agent)
    if flt.disposition:
        query = query.where(Call.disposition == flt.disposition)
    if flt.direction:
        query = query.where(Call.direction == flt.direction)
    return query


def list_calls(
    session: Session, flt: CallFilter, limit: int, offset: int
) -> tuple[list[Call], int]:
    """A page of calls, newest first, and how many match in all."""
    total = session.scalar(with_call_filter(select(func.count(Call.id)), flt)) or 0
    query = with_call_filter(select(Call), flt).order_by(Call.offered_at.desc(), Call.id.desc())
    rows = session.scalars(query.limit(limit).offset(offset)).all()
    return list(rows), int(total)
