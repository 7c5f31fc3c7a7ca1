"""The agent-state pages.

- ``GET /agent/states``: the agent's state, time in it, queues (logged in or not, penalty),
  the pause reasons and the state history; ``POST /agent/states/login`` and ``/logout``
  (``queues``: one or more queue names), ``/pause`` (``reason``), ``/ready``.
- ``GET /agent/states/now``: the same state as JSON (``state``, ``label`` in the page's
  language, ``reason``, ``since``, ``queues``).
- ``GET``/``POST /admin/pause-reasons``: the admin's list of pause reasons (``label``);
  ``POST /admin/pause-reasons/{id}/active`` (``active``: ``1`` or ``0``) shows or hides one.
- ``GET``/``POST /supervisor/queues``: per queue, after-call work seconds, login penalty,
  service-level target, the wallboard's thresholds and the satisfaction survey (on or off).

A request the state does not allow (an unknown queue, a pause while logged out) is refused with
the error beside its field and the form as typed; nothing is sent to Asterisk then.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts import audit, auth
from crm_bridge.accounts.auth import AdminUser, AgentUser, SignedInUser
from crm_bridge.agent_states import store
from crm_bridge.agent_states.domain import STATE_LABELS
from crm_bridge.agent_states.service import (
    NO_EXTENSION,
    AgentStateError,
    AgentStates,
)
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.web.language import label_half, language_of
from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, RowId, page_templates
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiError
from telephony.call_tracker import agent_from_interface
from telephony.queue_members import QueueActionRefused

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).resolve().parent / "templates")

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = PAGE_HEADERS | {"Content-Security-Policy": PAGE_POLICY}
NOT_RUNNING = "坐席状态服务未启用 / Agent states are not running"
AMI_FAILED = "电话系统未执行：{reason} / The phone system did not do it: {reason}"
"""Asterisk's reason is in both halves, so the page shows it in either language."""
Supervisor = Annotated[SignedInUser, Depends(auth.require_role("supervisor", "admin"))]


def service_of(request: Request) -> AgentStates:
    service = runtime_of(request).agent_states
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_RUNNING)
    return service


def render(request: Request, user: SignedInUser, name: str, context: dict[str, Any],
           code: int = 200) -> Response:  # fmt: skip
    context = {"user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
               "state_labels": STATE_LABELS, **context}  # fmt: skip
    return templates.TemplateResponse(request, name, context, status_code=code, headers=HEADERS)


def extension_of_user(user: SignedInUser) -> str:
    if not user.extensions:
        raise AgentStateError("queues", NO_EXTENSION)
    return agent_from_interface(user.extensions[0])


# -- the agent page


def agent_page(request: Request, user: SignedInUser, errors: dict[str, str] | None = None,
               form: dict[str, Any] | None = None) -> Response:  # fmt: skip
    service = service_of(request)
    extension = agent_from_interface(user.extensions[0]) if user.extensions else ""
    now = service.of(extension)
    with service.sessions() as session:
        reasons = store.active_reasons(session)
        history = store.history(session, extension) if extension else []
    members = {m.queue: m for m in service.link.board.of_interface(service.interface(extension))}
    context = {
        "extension": extension,
        "now": now,
        "queues": service.queues(),
        "members": members,
        "reasons": reasons,
        "history": history,
        "zone": runtime_of(request).settings.zone,
        "connected": service.link.connected,
        "errors": errors or {},
        "form": form or {},
    }
    return render(request, user, "agent_states.html", context, 400 if errors else 200)


@router.get("/agent/states")
async def agent_states_page(request: Request, user: AgentUser) -> Response:
    await service_of(request).history_written()
    return await run_in_threadpool(agent_page, request, user)


@router.get("/agent/states/now")
async def agent_state_now(request: Request, user: AgentUser) -> dict[str, Any]:
    """The agent's state now; once it is shown, it is in the state history too."""
    service = service_of(request)
    await service.history_written()
    now = service.of(agent_from_interface(user.extensions[0]) if user.extensions else "")
    label = label_half(now.status.label, language_of(request, user))
    return {"state": str(now.status.state), "label": label,
            "reason": now.status.reason, "since": now.since,
            "queues": list(now.status.queues)}  # fmt: skip


async def _act(request: Request, user: SignedInUser, form: dict[str, Any], action) -> Response:
    try:
        await action(extension_of_user(user))
    except AgentStateError as exc:
        return agent_page(request, user, {exc.field: exc.message}, form)
    except (QueueActionRefused, AmiError, UnsafeAmiValue) as exc:
        log.warning("agent state change by %s refused: %s", user.username, exc)
        return agent_page(request, user, {"form": AMI_FAILED.format(reason=exc)}, form)
    return RedirectResponse("/agent/states", status.HTTP_303_SEE_OTHER)


QueueList = Annotated[list[str] | None, Form(max_length=64)]


@router.post("/agent/states/login")
async def login_queues(request: Request, user: AgentUser, queues: QueueList = None) -> Response:
    service = service_of(request)
    queues = list(queues or [])
    return await _act(request, user, {"queues": queues},
                      lambda ext: service.login(ext, queues, f"Agent {ext}"))  # fmt: skip


@router.post("/agent/states/logout")
async def logout_queues(request: Request, user: AgentUser, queues: QueueList = None) -> Response:
    service = service_of(request)
    queues = list(queues or [])
    return await _act(request, user, {"queues": queues},
                      lambda ext: service.logout(ext, queues))  # fmt: skip


@router.post("/agent/states/pause")
async def pause(request: Request, user: AgentUser,
                reason: Annotated[str, Form(max_length=64)] = "") -> Response:  # fmt: skip
    service = service_of(request)
    return await _act(request, user, {"reason": reason},
                      lambda ext: service.pause(ext, reason))  # fmt: skip


@router.post("/agent/states/ready")
async def ready(request: Request, user: AgentUser) -> Response:
    service = service_of(request)
    return await _act(request, user, {}, service.ready)


# -- the admin's pause reasons


def reasons_page(request: Request, user: SignedInUser, errors: dict[str, str] | None = None,
                 label: str = "") -> Response:  # fmt: skip
    with runtime_of(request).sessions() as session:
        reasons = store.all_reasons(session)
        context = {"reasons": reasons, "errors": errors or {}, "label": label}
        return render(request, user, "pause_reasons.html", context, 400 if errors else 200)


@router.get("/admin/pause-reasons")
def pause_reasons(request: Request, user: AdminUser) -> Response:
    return reasons_page(request, user)


@router.post("/admin/pause-reasons")
def add_pause_reason(request: Request, runtime: RuntimeDep, user: AdminUser,
                     label: Annotated[str, Form(max_length=64)] = "") -> Response:  # fmt: skip
    try:
        with runtime.sessions.begin() as session:
            row = store.add_reason(session, label)
            audit.record(session, user=user, action="pause_reason_add",
                         subject=("pause_reason", row.id), client=audit.client_of(request),
                         details={"label": row.label})  # fmt: skip
    except store.StoreInputError as exc:
        return reasons_page(request, user, exc.errors, label)
    return RedirectResponse("/admin/pause-reasons", status.HTTP_303_SEE_OTHER)


OnOff = Annotated[str, Form(pattern="^[01]$")]


@router.post("/admin/pause-reasons/{reason_id}/active")
def set_pause_reason_active(request: Request, runtime: RuntimeDep, user: AdminUser,
                            reason_id: RowId,
                            active: OnOff) -> Response:  # fmt: skip
    with runtime.sessions.begin() as session:
        row = store.set_reason_active(session, reason_id, active == "1")
        if row is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="没有这个原因 / No such reason")
        audit.record(session, user=user, action="pause_reason_active",
                     subject=("pause_reason", reason_id), client=audit.client_of(request),
                     details={"active": row.active})  # fmt: skip
    return RedirectResponse("/admin/pause-reasons", status.HTTP_303_SEE_OTHER)


# -- per-queue settings


def queues_page(request: Request, user: SignedInUser, errors: dict[str, str] | None = None,
                form: dict[str, str] | None = None, queue: str = "") -> Response:  # fmt: skip
    service = service_of(request)
    with service.sessions() as session:
        rules = store.queue_rules(session)
    context = {"queues": service.queues(), "rules": rules, "default": store.QueueRules(),
               "errors": errors or {}, "form": form or {}, "error_queue": queue,
               "fields": store.FIELD_LIMITS}  # fmt: skip
    return render(request, user, "queue_settings.html", context, 400 if errors else 200)


@router.get("/supervisor/queues")
def queue_settings(request: Request, user: Supervisor) -> Response:
    return queues_page(request, user)


@router.post("/supervisor/queues/{queue}")
async def save_queue_settings(request: Request, runtime: RuntimeDep, user: Supervisor,
                              queue: str) -> Response:  # fmt: skip
    service = service_of(request)
    fields = {*store.FIELD_LIMITS, store.SURVEY_FIELD}
    form = {k: str(v) for k, v in (await request.form()).items() if k in fields}
    if queue not in service.queues():
        return queues_page(request, user, {"queue": "没有这个队列 / No such queue"}, form, queue)
    try:
        with runtime.sessions.begin() as session:
            store.save_queue_rules(session, queue, form)
            audit.record(session, user=user, action="queue_settings",
                         subject=("queue", queue), client=audit.client_of(request),
                         details=form)  # fmt: skip
    except store.StoreInputError as exc:
        return queues_page(request, user, exc.errors, form, queue)
    service.reload_rules()
    return RedirectResponse("/supervisor/queues", status.HTTP_303_SEE_OTHER)
