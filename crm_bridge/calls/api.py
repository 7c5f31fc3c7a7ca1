"""The JSON API of the call log and the customer lookup (``/api``), for the API token or a
supervisor or admin session."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, BeforeValidator, ConfigDict
from sqlalchemy.orm import Session

from crm_bridge.accounts.auth import api_access
from crm_bridge.calls.call_log import CallFilter, list_calls
from crm_bridge.calls.notes import notes_by_linkedid
from crm_bridge.customers.numbers import PhoneKind, normalize_phone
from crm_bridge.db.models import Call, find_customers_by_phone
from crm_bridge.runtime import RuntimeDep
from crm_bridge.web.pages import MAX_ROW_ID, RowId

# ------------------------------------------------------------------------------- API


def _not_a_number(value: object) -> object:
    """Refuses a number, which pydantic would read as seconds since 1970: the API documents
    ISO 8601 dates and times only."""
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return value
        raise ValueError("expected an ISO 8601 date and time, not a number")
    return value


IsoMoment = Annotated[datetime, BeforeValidator(_not_a_number)]


class CallOut(BaseModel):
    """One call of the call log (the documented, stable shape)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    linkedid: str
    server: str
    direction: Literal["inbound", "outbound"]
    caller: str | None
    caller_name: str | None
    callee: str | None
    queue: str | None
    agent: str | None
    disposition: Literal["answered", "abandoned", "busy", "no_answer", "failed"] | None
    hangup_cause: int | None
    hangup_cause_text: str | None
    offered_at: datetime | None
    answered_at: datetime | None
    ended_at: datetime | None
    wait_seconds: float | None
    talk_seconds: float | None
    customer_id: int | None
    campaign: str | None
    transferred_to: str | None
    end_reason: str | None
    survey_score: int | None = None
    """The customer's satisfaction score, 1-5 (5 best); None: not surveyed or no key pressed."""
    reconciled: bool = False
    """Logged from Asterisk's own records after callbridge was down (not watched live)."""
    wrapup_code: str | None = None
    """The agent's wrap-up code (see ``POST /me/calls/{linkedid}/wrapup``)."""
    note: str | None = None


def _utc(moment: datetime | None, name: str, zone: tzinfo) -> datetime | None:
    """A query's moment in UTC, one without an offset read in the center's zone; 422 for one
    that has no UTC form (past the year 9999 or before the year 1 once converted)."""
    if moment is None:
        return None
    try:
        return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)
    except OverflowError:
        error = {"type": "value_error", "loc": ("query", name), "msg": "Date out of range"}
        raise RequestValidationError([error]) from None


def _calls_out(session: Session, rows: list[Call]) -> list[CallOut]:
    """The calls with the agent's wrap-up code and note, read in one more query."""
    notes = notes_by_linkedid(session, [row.linkedid for row in rows])
    out = []
    for row in rows:
        call = CallOut.model_validate(row)
        if (note := notes.get(row.linkedid)) is not None:
            call.wrapup_code, call.note = note.wrapup_code, note.note
        out.append(call)
    return out


class CallPage(BaseModel):
    total: int
    limit: int
    offset: int
    calls: list[CallOut]


class PhoneOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number_e164: str
    kind: str


class CustomerOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    card_no: str
    name: str
    gender: str | None
    vip_level: str | None
    employer: str | None
    department: str | None
    phones: list[PhoneOut]


class CustomerMatch(BaseModel):
    query: str
    number: str | None
    kind: str
    customers: list[CustomerOut]


router = APIRouter(prefix="/api", dependencies=[Depends(api_access)])


@router.get("/calls", summary="The call log, newest first")
def get_calls(
    runtime: RuntimeDep,
    since: Annotated[
        IsoMoment | None,
        Query(description="offered at or after (ISO 8601; no offset: the center's zone)"),
    ] = None,
    until: Annotated[
        IsoMoment | None,
        Query(description="offered before (ISO 8601; no offset: the center's zone)"),
    ] = None,
    number: Annotated[str | None, Query(description="caller or callee, any form")] = None,
    agent: Annotated[str | None, Query(max_length=64)] = None,
    disposition: Literal["answered", "abandoned", "busy", "no_answer", "failed"] | None = None,
    direction: Literal["inbound", "outbound"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_ROW_ID)] = 0,
) -> CallPage:
    flt = CallFilter(
        since=_utc(since, "since", runtime.settings.zone),
        until=_utc(until, "until", runtime.settings.zone),
        number=runtime.numbers.to_e164(number) if number else None,
        agent=agent,
        disposition=disposition,
        direction=direction,
    )
    with runtime.sessions() as session:
        rows, total = list_calls(session, flt, limit, offset)
        calls = _calls_out(session, rows)
    return CallPage(total=total, limit=limit, offset=offset, calls=calls)


@router.get("/calls/{call_id}", summary="One call")
def get_call(call_id: RowId, runtime: RuntimeDep) -> CallOut:
    with runtime.sessions() as session:
        row = session.get(Call, call_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such call")
        return _calls_out(session, [row])[0]


@router.get("/customers", summary="Customers by phone number (any form: +86, 0086, area code)")
def get_customers(
    runtime: RuntimeDep, phone: Annotated[str, Query(min_length=1, max_length=64)]
) -> CustomerMatch:
    number = normalize_phone(phone, runtime.numbers.region, runtime.numbers.outside_line_prefix)
    if number.kind is not PhoneKind.E164:
        return CustomerMatch(query=phone, number=None, kind=str(number.kind), customers=[])
    with runtime.sessions() as session:
        found = find_customers_by_phone(session, number.e164)
        customers = [CustomerOut.model_validate(c) for c in found]
    return CustomerMatch(query=phone, number=number.e164, kind="e164", customers=customers)
