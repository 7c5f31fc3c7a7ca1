"""The agent page's JSON API, under ``/me``: the agent's own work on the calls that rang them.

Every route needs a signed-in agent, supervisor or admin, and the session's CSRF token in the
``X-CSRF-Token`` header (403 without it). A route naming a call answers 404 unless the call
rang one of the user's extensions (:func:`crm_bridge.calls.in_progress.agent_may_act`): in progress,
by the bridge's trackers; ended, by the call log.

- ``POST /me/calls/{linkedid}/customer`` ``{customer_id}``: the caller is this customer.
- ``POST /me/calls/{linkedid}/new-customer`` ``{name, gender, phone?, card_no?}``: add the
  caller to the archive with the call's own number (a ``phone`` given must be that number)
  and link them; answers the new customer's card.
- ``POST /me/calls/{linkedid}/wrapup`` ``{code, note}``: the wrap-up code and note.
- ``POST /me/complaints`` ``{customer_id, content, linkedid, category, severity}``: take a
  complaint on a call (category and severity as :mod:`crm_bridge.pops.work` lists them),
  for a customer on that call (:mod:`crm_bridge.calls.parties`; supervisors take the others on
  their complaint pages).
- ``POST /me/click-to-call`` ``{customer_id, phone}``: ring the user's first extension, then
  the customer's number (one of the customer's own numbers).

Errors: bad input is 400 with ``detail = {"message": ..., "errors": {field: message}}``
(zh-CN / English) and nothing written; a body of the wrong shape is FastAPI's 422. Other errors
have a zh-CN / English string as ``detail``: 404 for a call the user may not see, 409 for
click-to-call without an extension, 503 when the telephony server is not connected.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts.auth import AgentUser, SignedInUser
from crm_bridge.accounts.users import UserInputError
from crm_bridge.calls.dialing import (
    AMI_DOWN,
    AMI_NO_ANSWER,
    NO_EXTENSION,
    ORIGINATE_REFUSED,
    OriginateRefused,
    interface_of,
    originate_click_to_call,
)
from crm_bridge.calls.in_progress import (
    LINKEDID_PATTERN,
    NO_SUCH_CALL,
    LinkedId,
    LiveCalls,
    Rang,
    agent_may_act,
)
from crm_bridge.calls.notes import WRAPUP_LABELS, link_customer, save_wrapup
from crm_bridge.calls.parties import check_customer_on_call, party_number
from crm_bridge.customers.card import CustomerCard, build_cards
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import MAX_NOTE_CHARS, Customer, CustomerPhone
from crm_bridge.pops.work import (
    CATEGORY_LABELS,
    SEVERITY_LABELS,
    create_customer_for_call,
    open_complaint,
)
from crm_bridge.runtime import Runtime, RuntimeDep
from crm_bridge.web.pages import CustomerId, input_error
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiActionLost, AmiActionTimeout, AmiNotConnected
from telephony.call_events import CallRecord

log = logging.getLogger(__name__)

MAX_TEXT_FIELD = 20_000
"""The most characters a text field of a request may have at all; the rules of what may be
saved (2000 for a note) are checked after, with a clear message."""
CODES_DOC = ", ".join(f"`{code}` {label}" for code, label in WRAPUP_LABELS.items())



NOT_THE_CALLERS_NUMBER = "只能登记这通电话的号码 / Only the number of this call can be saved"
NO_NUMBER_ON_CALL = "这通电话没有可登记的号码 / This call has no number to save"


# ------------------------------------------------------------------------------- bodies


class LinkIn(BaseModel):
    customer_id: CustomerId


class LinkOut(BaseModel):
    linkedid: str
    customer_id: int


class NewCustomerIn(BaseModel):
    name: str = Field(max_length=MAX_TEXT_FIELD, description="姓名 (required)")
    gender: str | None = Field(default=None, max_length=8, description="M 男 / F 女")
    phone: str | None = Field(
        default=None,
        max_length=64,
        description="the call's own number (any form); left out: taken from the call",
    )
    card_no: str | None = Field(
        default=None, max_length=MAX_TEXT_FIELD, description="卡号; generated when left out"
    )


class NewCustomerOut(BaseModel):
    customer_id: int
    card: CustomerCard


class WrapupIn(BaseModel):
    code: str = Field(max_length=32, description=f"小结 wrap-up code: {CODES_DOC}")
    note: str | None = Field(
        default=None, max_length=MAX_TEXT_FIELD, description=f"备注, at most {MAX_NOTE_CHARS}"
    )


class WrapupOut(BaseModel):
    linkedid: str
    wrapup_code: str
    wrapup_label: str
    note: str | None


class ComplaintIn(BaseModel):
    customer_id: CustomerId
    content: str = Field(max_length=MAX_TEXT_FIELD)
    linkedid: str = Field(pattern=LINKEDID_PATTERN, description="the call it was said on")
    category: str | None = Field(
        default=None, max_length=32, description=f"one of {', '.join(CATEGORY_LABELS)}"
    )
    severity: str = Field(
        default="normal", max_length=32, description=f"one of {', '.join(SEVERITY_LABELS)}"
    )


class ComplaintOut(BaseModel):
    complaint_id: int


class ClickToCallIn(BaseModel):
    customer_id: CustomerId
    phone: str = Field(max_length=64, description="one of the customer's numbers, any form")


class ClickToCallOut(BaseModel):
    channel_id: str
    """The agent's channel; it is also the Linkedid of the call (an Originate starts it)."""


# ------------------------------------------------------------------------------- helpers


def _input_error(exc: UserInputError) -> HTTPException:
    return input_error(str(exc), exc.errors)


@contextmanager
def _work(runtime: Runtime) -> Iterator[Session]:
    """One transaction: all of it is saved, or (bad input, any error) none of it."""
    try:
        with runtime.sessions.begin() as session:
            yield session
    except UserInputError as exc:
        raise _input_error(exc) from None


def _check_call(
    session: Session, linkedid: str, user: SignedInUser, rung: dict[str, set[str]]
) -> None:
    if not agent_may_act(session, linkedid, user.extensions, lambda lid: rung.get(lid, set())):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_CALL)


def _callers_number(
    session: Session,
    linkedid: str,
    given: str | None,
    live: dict[str, CallRecord],
    runtime: Runtime,
) -> str:
    """The number a new caller is saved with: the call's own; one typed must be it."""
    number = party_number(session, linkedid, live.get(linkedid), runtime.numbers)
    if number is None:
        raise UserInputError({"phone": NO_NUMBER_ON_CALL})
    if given is not None and given.strip():
        typed = normalize_phone(given, runtime.numbers.region, runtime.numbers.outside_line_prefix)
        if typed.e164 != number:
            raise UserInputError({"phone": NOT_THE_CALLERS_NUMBER})
    return number


def _customers_number(session: Session, customer_id: int, phone: str, runtime: Runtime) -> str:
    """The E.164 form of ``phone``, which must be one of the customer's numbers."""
    numbers = runtime.numbers
    e164 = normalize_phone(phone, numbers.region, numbers.outside_line_prefix).e164
    if e164 is None:
        raise UserInputError({"phone": "电话号码无效 / Not a usable phone number"})
    if session.get(Customer, customer_id) is None:
        raise UserInputError({"customer_id": "客户不存在 / No such customer"})
    held = select(CustomerPhone.id).where(
        CustomerPhone.customer_id == customer_id, CustomerPhone.number_e164 == e164
    )
    if session.scalar(held) is None:
        raise UserInputError({"phone": "这不是该客户的号码 / Not a number of this customer"})
    return e164


# ------------------------------------------------------------------------------- routes


router = APIRouter(prefix="/me", tags=["agent"])


@router.post("/calls/{linkedid}/customer", summary="The caller is this customer")
def post_customer(
    linkedid: LinkedId, body: LinkIn, user: AgentUser, runtime: RuntimeDep, rang: Rang
) -> LinkOut:
    with _work(runtime) as session:
        _check_call(session, linkedid, user, rang)
        link_customer(session, linkedid, body.customer_id, user.username)
    return LinkOut(linkedid=linkedid, customer_id=body.customer_id)


@router.post("/calls/{linkedid}/new-customer", summary="Add the caller to the archive")
def post_new_customer(
    linkedid: LinkedId,
    body: NewCustomerIn,
    user: AgentUser,
    runtime: RuntimeDep,
    rang: Rang,
    live: LiveCalls,
) -> NewCustomerOut:
    settings = runtime.settings
    with _work(runtime) as session:
        _check_call(session, linkedid, user, rang)
        customer_id = create_customer_for_call(
            session,
            linkedid,
            name=body.name,
            gender=body.gender,
            phone_raw=_callers_number(session, linkedid, body.phone, live, runtime),
            card_no=body.card_no,
            agent=user.username,
            region=settings.number_region,
            outside_prefix=settings.outside_line_prefix,
        )
        today = datetime.now(settings.zone).date()
        (card,) = build_cards(session, [customer_id], today=today, zone=settings.zone)
    return NewCustomerOut(customer_id=customer_id, card=card)


@router.post(
    "/calls/{linkedid}/wrapup",
    summary="Wrap up the call: code and note",
    description=f"Codes: {CODES_DOC}. Saving again replaces code and note.",
)
def post_wrapup(
    linkedid: LinkedId, body: WrapupIn, user: AgentUser, runtime: RuntimeDep, rang: Rang
) -> WrapupOut:
    with _work(runtime) as session:
        _check_call(session, linkedid, user, rang)
        save_wrapup(session, linkedid, body.code, body.note, user.username)
    note = (body.note or "").strip() or None
    label = WRAPUP_LABELS[body.code]
    return WrapupOut(linkedid=linkedid, wrapup_code=body.code, wrapup_label=label, note=note)


@router.post("/complaints", summary="Take a complaint said on a call, for its customer")
def post_complaint(
    body: ComplaintIn, user: AgentUser, runtime: RuntimeDep, rang: Rang, live: LiveCalls
) -> ComplaintOut:
    with _work(runtime) as session:
        _check_call(session, body.linkedid, user, rang)
        check_customer_on_call(session, body.linkedid, body.customer_id, live, runtime.numbers)
        complaint_id = open_complaint(
            session, body.customer_id, body.content, user.username, body.linkedid,
            category=body.category, severity=body.severity,
        )  # fmt: skip
    return ComplaintOut(complaint_id=complaint_id)


@router.post("/click-to-call", summary="Ring my phone, then the customer")
async def post_click_to_call(
    body: ClickToCallIn, user: AgentUser, runtime: RuntimeDep
) -> ClickToCallOut:
    if not user.extensions:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=NO_EXTENSION)

    def number() -> str:
        with _work(runtime) as session:
            return _customers_number(session, body.customer_id, body.phone, runtime)

    e164 = await run_in_threadpool(number)
    interface = interface_of(user.extensions[0])
    try:
        channel_id = await originate_click_to_call(
            runtime.bridge, interface, e164, runtime.settings
        )
    except AmiNotConnected:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=AMI_DOWN) from None
    except (AmiActionTimeout, AmiActionLost):
        raise HTTPException(status.HTTP_504_GATEWAY_TIMEOUT, detail=AMI_NO_ANSWER) from None
    except OriginateRefused as exc:
        log.warning("click-to-call by %s refused: %s", user.username, exc)
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, detail=ORIGINATE_REFUSED) from None
    except UnsafeAmiValue as exc:
        raise _input_error(UserInputError({"request": str(exc)})) from None

    def link() -> None:
        with _work(runtime) as session:
            link_customer(session, channel_id, body.customer_id, user.username)

    await run_in_threadpool(link)
    return ClickToCallOut(channel_id=channel_id)
