"""The admin's do-not-call page: numbers never to call, customers who opted out, and the
guardians' consents that let marketing campaigns call a minor.

- ``GET/POST /admin/do-not-call``, ``POST /admin/do-not-call/{id}/delete``,
  ``POST /admin/opt-outs``, ``POST /admin/opt-outs/{id}/delete``,
  ``POST /admin/guardian-consents``, ``POST /admin/guardian-consents/{id}/delete``: admins only.

Every form carries the session's CSRF token. A form with bad input (an empty field, a number
that is no phone number, a card no. nobody holds) comes back with status 400, what was typed in
it, and each error beside its field; nothing is stored then. Recording and withdrawing a
guardian's consent are audited (who, when, for which customer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import delete, select

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import AdminUser, SignedInUser
from crm_bridge.campaigns import store
from crm_bridge.campaigns.page_kit import page
from crm_bridge.customers.numbers import mask_phone, normalize_phone
from crm_bridge.db.models import (
    Customer,
    CustomerOptOut,
    DoNotCall,
    GuardianConsent,
)
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.web.pages import (
    RowId,
)

router = APIRouter(include_in_schema=False)


NO_CARD = "没有这个卡号 / No customer with this card no."
NO_CARD_GIVEN = "请填写卡号 / Enter a card no."
NO_NUMBER = "请填写号码 / Enter a number"
BAD_NUMBER = "电话号码无效 / Not a usable phone number"
NO_GUARDIAN = "请填写监护人姓名 / Enter the guardian's name"


@dataclass(frozen=True)
class Refused:
    """A form of the page sent back: which one (``number``, ``opt_out``, ``guardian``), what
    was typed in it, and the error of each field."""

    form: str
    typed: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)


def dnc_page(request: Request, user: SignedInUser, refused: Refused | None = None) -> Response:
    with runtime_of(request).sessions() as session:
        numbers = session.scalars(select(DoNotCall).order_by(DoNotCall.id.desc())).all()
        opted = session.execute(
            select(CustomerOptOut, Customer.card_no, Customer.name)
            .join(Customer, Customer.id == CustomerOptOut.customer_id)
            .order_by(CustomerOptOut.id.desc())
        ).all()
        consents = session.execute(
            select(GuardianConsent, Customer.card_no, Customer.name)
            .join(Customer, Customer.id == GuardianConsent.customer_id)
            .order_by(GuardianConsent.id.desc())
        ).all()
    context = {
        "numbers": numbers,
        "opted": opted,
        "consents": consents,
        "typed": {refused.form: refused.typed} if refused else {},
        "field_errors": {refused.form: refused.errors} if refused else {},
        "mask": mask_phone,
        "zone": runtime_of(request).settings.zone,
    }
    code = status.HTTP_400_BAD_REQUEST if refused else status.HTTP_200_OK
    return page(request, user, "admin_do_not_call.html", context, code)


def card_problem(card_no: str, customer_id: int | None) -> str | None:
    if not card_no.strip():
        return NO_CARD_GIVEN
    return NO_CARD if customer_id is None else None


@router.get("/admin/do-not-call")
def do_not_call_page(request: Request, user: AdminUser) -> Response:
    return dnc_page(request, user)


@router.post("/admin/do-not-call")
def add_number(
    request: Request,
    runtime: RuntimeDep,
    user: AdminUser,
    number: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    settings = runtime.settings
    e164 = normalize_phone(number, settings.number_region, settings.outside_line_prefix).e164
    if e164 is None:
        problem = BAD_NUMBER if number.strip() else NO_NUMBER
        typed = {"number": number, "note": note}
        return dnc_page(request, user, Refused("number", typed, {"number": problem}))
    with runtime.sessions.begin() as session:
        store.add_do_not_call(session, e164, note.strip() or None, user.username)
    return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)


@router.post("/admin/do-not-call/{entry_id}/delete")
def remove_number(
    request: Request, runtime: RuntimeDep, user: AdminUser, entry_id: RowId
) -> Response:
    with runtime.sessions.begin() as session:
        session.execute(delete(DoNotCall).where(DoNotCall.id == entry_id))
    return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)


@router.post("/admin/opt-outs")
def add_opt_out(
    request: Request,
    runtime: RuntimeDep,
    user: AdminUser,
    card_no: Annotated[str, Form(max_length=32)] = "",
    note: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    with runtime.sessions.begin() as session:
        customer_id = session.scalar(select(Customer.id).where(Customer.card_no == card_no.strip()))
        problem = card_problem(card_no, customer_id)
        if problem is None:
            store.opt_out(session, customer_id, "admin", note.strip() or None, user.username)
    if problem is not None:
        typed = {"card_no": card_no, "note": note}
        return dnc_page(request, user, Refused("opt_out", typed, {"card_no": problem}))
    return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)


@router.post("/admin/opt-outs/{entry_id}/delete")
def remove_opt_out(
    request: Request, runtime: RuntimeDep, user: AdminUser, entry_id: RowId
) -> Response:
    with runtime.sessions.begin() as session:
        session.execute(delete(CustomerOptOut).where(CustomerOptOut.id == entry_id))
    return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)


@router.post("/admin/guardian-consents")
def add_guardian_consent(
    request: Request,
    runtime: RuntimeDep,
    user: AdminUser,
    card_no: Annotated[str, Form(max_length=32)] = "",
    guardian: Annotated[str, Form(max_length=64)] = "",
    note: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    """A guardian's consent to marketing calls for a minor (or a customer tagged as a child):
    recorded once per customer; a second one replaces the first."""
    errors = {}
    if not guardian.strip():
        errors["guardian"] = NO_GUARDIAN
    with runtime.sessions.begin() as session:
        customer_id = session.scalar(select(Customer.id).where(Customer.card_no == card_no.strip()))
        if problem := card_problem(card_no, customer_id):
            errors["card_no"] = problem
        if errors:
            typed = {"card_no": card_no, "guardian": guardian, "note": note}
            return dnc_page(request, user, Refused("guardian", typed, errors))
        session.execute(delete(GuardianConsent).where(GuardianConsent.customer_id == customer_id))
        consent = GuardianConsent(
            customer_id=customer_id,
            guardian=guardian.strip(),
            note=note.strip() or None,
            recorded_by=user.username,
        )
        session.add(consent)
        session.flush()
        audit.record(
            session,
            user=user,
            action="guardian_consent",
            subject=("customer", customer_id),
            client=audit.client_of(request),
            details={"consent_id": consent.id},
        )
    return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)


@router.post("/admin/guardian-consents/{entry_id}/delete")
def remove_guardian_consent(
    request: Request, runtime: RuntimeDep, user: AdminUser, entry_id: RowId
) -> Response:
    with runtime.sessions.begin() as session:
        consent = session.get(GuardianConsent, entry_id)
        if consent is not None:
            audit.record(
                session,
                user=user,
                action="guardian_consent_withdrawn",
                subject=("customer", consent.customer_id),
                client=audit.client_of(request),
                details={"consent_id": consent.id},
            )
            session.delete(consent)
    return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)
