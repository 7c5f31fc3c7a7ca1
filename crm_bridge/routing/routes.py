"""The admin's routing page.

- ``GET /admin/routing``: the rules in force: queue priority per VIP level, the high-value
  threshold and its priority, the account manager's ring time, the complaint queue, and the
  customers' account managers.
- ``POST /admin/routing/settings`` (``high_value_yuan``: blank for no such rule,
  ``high_value_priority``, ``manager_ring_seconds``, ``complaint_queue``: blank for none).
- ``POST /admin/routing/tiers`` (``tier``, ``priority``); ``POST
  /admin/routing/tiers/{id}/delete``.
- ``POST /admin/routing/managers`` (``card_no``, ``extension``); ``POST
  /admin/routing/managers/{customer_id}/delete``.

Bad input (a VIP level no customer holds, a queue Asterisk does not have, a card no. or an
extension nobody has, a priority out of range) is refused with the error beside its field and
the form as typed; nothing is saved then. Every change is written to the audit log and takes
effect with the next call.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import AdminUser, SignedInUser
from crm_bridge.routing import store
from crm_bridge.routing.service import Routing
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, RowId, page_templates

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).resolve().parent / "templates")

PAGE = "/admin/routing"
NO_MANAGER = "这位客户没有客户经理 / This customer has no account manager"
Text = Annotated[str, Form(max_length=64)]


def queues_of(request: Request) -> list[str] | None:
    """The queues Asterisk has, from the agent states' view of it; None when unknown (agent
    states off, or no queue heard of yet)."""
    states = runtime_of(request).agent_states
    return (states.queues() or None) if states is not None else None


def routing_page(request: Request, user: SignedInUser, errors: dict[str, str] | None = None,
                 form: dict[str, str] | None = None) -> Response:  # fmt: skip
    runtime = runtime_of(request)
    with runtime.sessions() as session:
        context: dict[str, Any] = {
            "user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
            "running": runtime.routing is not None, "tiers": store.tiers(session),
            "known_tiers": store.known_tiers(session), "queues": queues_of(request),
            "settings": asdict(store.settings_form(session)), "managers": store.managers(session),
            "errors": errors or {}, "form": form or {},
        }  # fmt: skip
    code = 400 if errors else 200
    return templates.TemplateResponse(request, "routing.html", context, status_code=code,
                                      headers=PAGE_HEADERS)  # fmt: skip


def _saved(request: Request) -> Response:
    routing: Routing | None = runtime_of(request).routing
    if routing is not None:
        routing.reload_rules()
    return RedirectResponse(PAGE, status.HTTP_303_SEE_OTHER)


@router.get(PAGE)
def routing_rules(request: Request, user: AdminUser) -> Response:
    return routing_page(request, user)


@router.post(f"{PAGE}/settings")
def save_settings(request: Request, runtime: RuntimeDep, user: AdminUser,
                  high_value_yuan: Text = "", high_value_priority: Text = "",
                  manager_ring_seconds: Text = "",
                  complaint_queue: Text = "") -> Response:  # fmt: skip
    form = store.SettingsForm(high_value_yuan, high_value_priority, manager_ring_seconds,
                              complaint_queue)  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            store.save_settings(session, form, queues_of(request))
            audit.record(session, user=user, action="routing_settings",
                         subject=("routing", "settings"), client=audit.client_of(request),
                         details=asdict(form))  # fmt: skip
    except store.RoutingInputError as exc:
        return routing_page(request, user, exc.errors, asdict(form))
    return _saved(request)


@router.post(f"{PAGE}/tiers")
def add_tier(request: Request, runtime: RuntimeDep, user: AdminUser,
             tier: Text = "", priority: Text = "") -> Response:  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            row = store.add_tier(session, tier, priority)
            audit.record(session, user=user, action="routing_tier_add",
                         subject=("routing_tier", row.id), client=audit.client_of(request),
                         details={"tier": row.tier, "priority": row.priority})  # fmt: skip
    except store.RoutingInputError as exc:
        return routing_page(request, user, exc.errors, {"tier": tier, "priority": priority})
    return _saved(request)


@router.post(PAGE + "/tiers/{tier_id}/delete")
def remove_tier(request: Request, runtime: RuntimeDep, user: AdminUser,
                tier_id: RowId) -> Response:  # fmt: skip
    with runtime.sessions.begin() as session:
        row = store.remove_tier(session, tier_id)
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="没有这条规则 / No such rule")
        audit.record(session, user=user, action="routing_tier_remove",
                     subject=("routing_tier", tier_id), client=audit.client_of(request),
                     details={"tier": row.tier})  # fmt: skip
    return _saved(request)


@router.post(f"{PAGE}/managers")
def set_manager(request: Request, runtime: RuntimeDep, user: AdminUser,
                card_no: Text = "", extension: Text = "") -> Response:  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            customer = store.set_manager(session, card_no, extension)
            audit.record(session, user=user, action="account_manager_set",
                         subject=("customer", customer.id), client=audit.client_of(request),
                         details={"extension": extension.strip()})  # fmt: skip
    except store.RoutingInputError as exc:
        return routing_page(request, user, exc.errors, {"card_no": card_no,
                                                         "extension": extension})  # fmt: skip
    return _saved(request)


@router.post(PAGE + "/managers/{customer_id}/delete")
def remove_manager(request: Request, runtime: RuntimeDep, user: AdminUser,
                   customer_id: RowId) -> Response:  # fmt: skip
    with runtime.sessions.begin() as session:
        if not store.remove_manager(session, customer_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_MANAGER)
        audit.record(session, user=user, action="account_manager_remove",
                     subject=("customer", customer_id),
                     client=audit.client_of(request))  # fmt: skip
    return _saved(request)
