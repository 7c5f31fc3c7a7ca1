"""The agent's pages outside the screen pop (agents; supervisors and admins may open them).

- ``GET /me/history`` (``after``: the cursor of the next page): the user's own calls, newest
  first, and their figures of today (:mod:`crm_bridge.agent_day.history`). Numbers are masked;
  the link to a call's recording and transcript is shown to supervisors and admins only, who
  are the ones allowed to open them.
- ``GET /me/callbacks``: today's missed and abandoned calls still to call back
  (:mod:`crm_bridge.agent_day.callbacks`); ``POST /me/callbacks/{call_id}/take`` takes one,
  ``POST /me/callbacks/{call_id}/call`` calls it back with click-to-call (refused for a number
  on the do-not-call list, or taken by someone else).
- ``GET /customers`` (``q``: a name, card number or phone number), ``GET /customers/{id}``,
  ``POST /customers/{id}``: the archive searched, a customer's card, and the fields agents may
  edit (:mod:`crm_bridge.customers.editing`), each change in the audit log.

Every form carries the session's CSRF token; bad input is answered 400 with the error beside
its field and the form as typed, and nothing saved.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import AgentUser, SignedInUser
from crm_bridge.accounts.users import UserInputError
from crm_bridge.agent_day import callbacks, history
from crm_bridge.calls.dialing import (
    AMI_DOWN,
    AMI_NO_ANSWER,
    NO_EXTENSION,
    ORIGINATE_REFUSED,
    OriginateRefused,
    interface_of,
    originate_click_to_call,
)
from crm_bridge.calls.in_progress import agent_keys
from crm_bridge.calls.notes import link_customer
from crm_bridge.calls.search import Cursor, customer_names
from crm_bridge.customers.card import build_cards
from crm_bridge.customers.editing import EDITABLE, apply_edit, read_edit
from crm_bridge.customers.numbers import mask_phone
from crm_bridge.customers.search import find_customers
from crm_bridge.db.models import Customer
from crm_bridge.runtime import Runtime, RuntimeDep, runtime_of
from crm_bridge.supervision.page_kit import DIRECTIONS, DISPOSITIONS, SUPERVISOR_ROLES
from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, RowId, page_templates
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiActionLost, AmiActionTimeout, AmiNotConnected

log = logging.getLogger(__name__)

HEADERS = PAGE_HEADERS | {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}
NO_SUCH_CUSTOMER = "没有这位客户 / No such customer"
BAD_CURSOR = "翻页参数无效 / Not a page of this list"

templates = page_templates(Path(__file__).resolve().parent / "templates")
router = APIRouter(include_in_schema=False)


def render(request: Request, user: SignedInUser, name: str, context: dict[str, Any],
           code: int = 200) -> Response:  # fmt: skip
    runtime = runtime_of(request)
    context = {
        "user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
        "zone": runtime.settings.zone, "mask": mask_phone, "directions": DIRECTIONS,
        "dispositions": DISPOSITIONS, **context,
    }  # fmt: skip
    return templates.TemplateResponse(request, name, context, status_code=code, headers=HEADERS)


def _now() -> datetime:
    return datetime.now(UTC)


# -- /me/history


@router.get("/me/history")
def my_history(
    request: Request,
    runtime: RuntimeDep,
    user: AgentUser,
    after: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    try:
        cursor = Cursor.decode(after) if after else None
    except ValueError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, detail=BAD_CURSOR) from None
    agents = agent_keys(user.extensions)
    now = _now()
    period = history.today(runtime.settings.zone, now)
    with runtime.sessions() as session:
        page = history.my_calls(session, agents, after=cursor)
        figures = history.day_figures(session, agents, period, now)
        names = customer_names(session, {c.customer_id for c in page.calls if c.customer_id})
    context = {
        "page": page,
        "figures": figures,
        "names": names,
        "may_open_recordings": user.role in SUPERVISOR_ROLES,
        "first_page": cursor is None,
    }
    return render(request, user, "my_history.html", context)


# -- /me/callbacks


def callbacks_page(request: Request, user: SignedInUser, *, placed: bool = False,
                   errors: dict[int, str] | None = None, code: int = 200) -> Response:  # fmt: skip
    """The list; ``errors`` by call id are shown on their rows, ``placed`` says a call back
    is ringing the agent's phone."""
    runtime = runtime_of(request)
    with runtime.sessions() as session:
        rows = callbacks.callbacks(session, history.today(runtime.settings.zone, _now()))
        names = customer_names(session, {r.call.customer_id for r in rows if r.call.customer_id})
    context = {"rows": rows, "names": names, "placed": placed, "errors": errors or {}}
    return render(request, user, "my_callbacks.html", context, code)


@router.get("/me/callbacks")
def my_callbacks(request: Request, user: AgentUser) -> Response:
    return callbacks_page(request, user)


@router.post("/me/callbacks/{call_id}/take")
def take_callback(request: Request, runtime: RuntimeDep, user: AgentUser,
                  call_id: RowId) -> Response:  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            taker = callbacks.take(session, call_id, user.username)
    except LookupError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    if taker != user.username:
        return callbacks_page(request, user, errors={call_id: _taken_by(taker)},
                              code=status.HTTP_409_CONFLICT)  # fmt: skip
    return RedirectResponse("/me/callbacks", status.HTTP_303_SEE_OTHER)


def _taken_by(username: str) -> str:
    return f"已由 {username} 接手 / Taken by {username}"


@router.post("/me/callbacks/{call_id}/call")
async def call_back(request: Request, runtime: RuntimeDep, user: AgentUser,
                    call_id: RowId) -> Response:  # fmt: skip
    def start() -> tuple[str, int | None]:
        with runtime.sessions.begin() as session:
            call = callbacks.start_call_back(session, call_id, user.username)
            return call.caller or "", call.customer_id

    def refused(message: str, code: int) -> Response:
        return callbacks_page(request, user, errors={call_id: message}, code=code)

    if not user.extensions:
        return refused(NO_EXTENSION, status.HTTP_409_CONFLICT)
    try:
        number, customer_id = await run_in_threadpool(start)
    except callbacks.TakenByOther as exc:
        return refused(_taken_by(exc.taken_by), status.HTTP_409_CONFLICT)
    except LookupError as exc:
        if str(exc) == callbacks.NOT_A_CALLBACK:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        return refused(str(exc), status.HTTP_409_CONFLICT)
    failure = await _place_call(runtime, user, number, customer_id)
    if failure is not None:
        return refused(*failure)

    def done() -> None:
        with runtime.sessions.begin() as session:
            callbacks.called_back(session, call_id)

    await run_in_threadpool(done)
    return callbacks_page(request, user, placed=True)


async def _place_call(runtime: Runtime, user: SignedInUser, number: str,
                      customer_id: int | None) -> tuple[str, int] | None:  # fmt: skip
    """Click-to-call from the user's first extension; the failure's message and status."""
    try:
        channel_id = await originate_click_to_call(
            runtime.bridge, interface_of(user.extensions[0]), number, runtime.settings
        )
    except AmiNotConnected:
        return AMI_DOWN, status.HTTP_503_SERVICE_UNAVAILABLE
    except (AmiActionTimeout, AmiActionLost):
        return AMI_NO_ANSWER, status.HTTP_504_GATEWAY_TIMEOUT
    except OriginateRefused as exc:
        log.warning("call back by %s refused: %s", user.username, exc)
        return ORIGINATE_REFUSED, status.HTTP_502_BAD_GATEWAY
    except UnsafeAmiValue as exc:
        return str(exc), status.HTTP_400_BAD_REQUEST
    if customer_id is not None:

        def link() -> None:
            with runtime.sessions.begin() as session:
                link_customer(session, channel_id, customer_id, user.username)

        await run_in_threadpool(link)
    return None


# -- /customers


@router.get("/customers")
def customers_search(
    request: Request,
    runtime: RuntimeDep,
    user: AgentUser,
    q: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    settings = runtime.settings
    with runtime.sessions() as session:
        found = find_customers(session, q, region=settings.number_region,
                               outside_line_prefix=settings.outside_line_prefix)  # fmt: skip
        rows = [(c.id, c.card_no, c.name, c.vip_level, [p.number_e164 for p in c.phones])
                for c in found]  # fmt: skip
    return render(request, user, "customers.html", {"q": q, "rows": rows})


def customer_page(request: Request, user: SignedInUser, customer_id: int, *,
                  form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
                  saved: bool = False) -> Response:  # fmt: skip
    runtime = runtime_of(request)
    zone = runtime.settings.zone
    with runtime.sessions() as session:
        cards = build_cards(session, [customer_id], today=datetime.now(zone).date(), zone=zone)
    if not cards:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_CUSTOMER)
    (card,) = cards
    if form is None:
        form = {field: "" if getattr(card, field) is None else str(getattr(card, field))
                for field in EDITABLE}  # fmt: skip
    context = {"card": card, "form": form, "errors": errors or {}, "saved": saved}
    return render(request, user, "customer.html", context, 400 if errors else 200)


@router.get("/customers/{customer_id}")
def customer_card(request: Request, user: AgentUser, customer_id: RowId,
                  saved: bool = False) -> Response:  # fmt: skip
    return customer_page(request, user, customer_id, saved=saved)


@router.post("/customers/{customer_id}")
async def edit_customer(request: Request, runtime: RuntimeDep, user: AgentUser,
                        customer_id: RowId) -> Response:  # fmt: skip
    submitted = await request.form()
    form = {field: str(submitted.get(field) or "") for field in EDITABLE}
    zone = runtime.settings.zone

    def save() -> None:
        edit = read_edit(form, datetime.now(zone).date())
        with runtime.sessions.begin() as session:
            customer = session.get(Customer, customer_id)
            if customer is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_CUSTOMER)
            changed = apply_edit(customer, edit)
            if changed:
                audit.record(session, user=user, action="customer_edit",
                             subject=("customer", customer_id), client=audit.client_of(request),
                             details={"changes": changed})  # fmt: skip

    try:
        await run_in_threadpool(save)
    except UserInputError as exc:
        return customer_page(request, user, customer_id, form=form, errors=exc.errors)
    return RedirectResponse(f"/customers/{customer_id}?saved=1", status.HTTP_303_SEE_OTHER)
