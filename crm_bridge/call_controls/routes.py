"""Call controls and the dial pad on the agent page (JSON, ``X-CSRF-Token``).

- ``GET /me/calls/{linkedid}/control``: the state of the user's own call (the card asks when
  it shows the controls, e.g. after a reload while the call is on hold).
- ``POST /me/calls/{linkedid}/control`` ``{"control", "target_kind"?, "target"?}``: one control
  of the user's own answered call (:mod:`crm_bridge.call_controls.domain`: ``hangup``,
  ``hold``, ``resume``, ``transfer`` and ``consult`` with a target, ``complete``, ``cancel``).
  Answers ``{"state", "state_label", "message"}``; the card shows the state.
- ``POST /me/dial`` ``{"number"}``: the dial pad: ring the user's first extension, then the
  number (any form the center's region reads), unless it is on the do-not-call list.

Agents, supervisors and admins (the agent desk), each only on a call they answered; the
channels come from Asterisk's events, never from the request. Every control and every dial is
written to the audit log before it is sent (actions ``call_<control>`` and ``dial``, subject
the call or the number masked), and one Asterisk did not carry out gets a second entry,
``call_control_failed``, with the reason. Refusals: 400 a bad target or number with
``detail = {"message", "errors": {field: message}}`` (zh-CN / English; nothing sent), 404 not
the user's call, 409 not allowed in the call's state (or another control of the call still
under way), 503/504/502 the phone system away, not
answering or refusing.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import AgentUser, SignedInUser
from crm_bridge.call_controls.domain import (
    CONTROLS,
    NOT_A_NUMBER,
    NOT_STARTED,
    ON_DO_NOT_CALL,
    STATES,
    UNKNOWN_KIND,
    ControlRefused,
    Target,
    agent_target,
    number_target,
    queue_target,
)
from crm_bridge.call_controls.service import CallControls, Plan
from crm_bridge.calls.dialing import (
    AMI_DOWN,
    AMI_NO_ANSWER,
    NO_EXTENSION,
    ORIGINATE_REFUSED,
    OriginateRefused,
    interface_of,
    originate_click_to_call,
    outside_line_exten,
)
from crm_bridge.calls.in_progress import LinkedId
from crm_bridge.customers.numbers import mask_phone, normalize_phone
from crm_bridge.db.models import DoNotCall
from crm_bridge.runtime import Runtime, runtime_of
from crm_bridge.web.pages import input_error
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiActionLost, AmiActionTimeout, AmiNotConnected
from telephony.call_controls import ControlFailed
from telephony.call_tracker import agent_from_interface

log = logging.getLogger(__name__)

router = APIRouter(prefix="/me", tags=["agent"])
FAILED_ACTION = "call_control_failed"
CONTROL_FAILED = "电话系统拒绝了这个操作 / The phone system refused this control"
FAILURES: dict[type[Exception], tuple[int, str]] = {
    AmiNotConnected: (status.HTTP_503_SERVICE_UNAVAILABLE, AMI_DOWN),
    AmiActionTimeout: (status.HTTP_504_GATEWAY_TIMEOUT, AMI_NO_ANSWER),
    AmiActionLost: (status.HTTP_504_GATEWAY_TIMEOUT, AMI_NO_ANSWER),
    ControlFailed: (status.HTTP_502_BAD_GATEWAY, CONTROL_FAILED),
    OriginateRefused: (status.HTTP_502_BAD_GATEWAY, ORIGINATE_REFUSED),
    UnsafeAmiValue: (status.HTTP_400_BAD_REQUEST, CONTROL_FAILED),
}
FAILURE_TYPES = tuple(FAILURES)


class ControlIn(BaseModel):
    control: str = Field(max_length=16, description=", ".join(CONTROLS))
    target_kind: str | None = Field(default=None, max_length=16, description="queue, agent, number")
    target: str | None = Field(default=None, max_length=64, description="queue, extension, number")


class ControlOut(BaseModel):
    state: str
    state_label: str
    message: str


class DialIn(BaseModel):
    number: str = Field(max_length=64, description="any form the center's region reads")


class DialOut(BaseModel):
    channel_id: str
    message: str


def _service(request: Request) -> CallControls:
    service = getattr(runtime_of(request), "call_controls", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_STARTED)
    return service


def _refusal(exc: ControlRefused) -> HTTPException:
    if exc.field is not None:
        return input_error(exc.message, {exc.field: exc.message})
    return HTTPException(exc.status, detail=exc.message)


def _on_do_not_call(runtime: Runtime, e164: str) -> bool:
    with runtime.sessions() as session:
        listed = select(DoNotCall.id).where(DoNotCall.number_e164 == e164)
        return session.scalar(listed) is not None


def _callable_number(runtime: Runtime, raw: str, field: str) -> str:
    """The E.164 form of a number typed by the agent, which must be valid and not on the
    do-not-call list (raises :class:`ControlRefused` for ``field``)."""
    numbers = runtime.numbers
    e164 = normalize_phone(raw, numbers.region, numbers.outside_line_prefix).e164
    if e164 is None:
        raise ControlRefused(400, NOT_A_NUMBER, field)
    if _on_do_not_call(runtime, e164):
        raise ControlRefused(400, ON_DO_NOT_CALL, field)
    return e164


def _target(runtime: Runtime, user: SignedInUser, body: ControlIn) -> Target | None:
    if body.control not in ("transfer", "consult"):
        return None
    value = (body.target or "").strip()
    if body.target_kind == "queue":
        return queue_target(value, runtime.settings.transfer_queues)
    if body.target_kind == "agent":
        return agent_target(value, {agent_from_interface(e) for e in user.extensions})
    if body.target_kind == "number":
        e164 = _callable_number(runtime, value, "target")
        return number_target(mask_phone(e164), outside_line_exten(e164, runtime.settings))
    raise ControlRefused(400, UNKNOWN_KIND, "target_kind")


def _message(plan: Plan, target: Target | None) -> str:
    zh, en = CONTROLS[plan.control].split(" ", 1)
    if target is None:
        return f"{zh}：已完成 / {en}: done"
    return f"{zh}：{target.label.split(' / ')[0]} / {en}: {target.label.split(' / ')[1]}"


class StateOut(BaseModel):
    state: str
    state_label: str
    target: str | None = None
    """Whom an attended transfer in progress is talking to (a number masked)."""


@router.get("/calls/{linkedid}/control", summary="The state of my call: talking, held, consulting")
async def get_control(request: Request, linkedid: LinkedId, user: AgentUser) -> StateOut:
    try:
        call = _service(request).state_of(user.username, user.extensions, linkedid)
    except ControlRefused as exc:
        raise _refusal(exc) from None
    target = call.target.label if call.target is not None else None
    return StateOut(state=call.state, state_label=STATES[call.state], target=target)


@router.post("/calls/{linkedid}/control", summary="Hang up, hold, resume or transfer my call")
async def post_control(
    request: Request, linkedid: LinkedId, body: ControlIn, user: AgentUser
) -> ControlOut:
    service = _service(request)
    runtime = runtime_of(request)
    try:
        target = await run_in_threadpool(_target, runtime, user, body)
        plan = service.plan(user.username, user.extensions, linkedid, body.control, target)
    except ControlRefused as exc:
        raise _refusal(exc) from None
    client = audit.client_of(request)
    details = {"agent": plan.call.agent, "state": plan.call.state}
    if target is not None:
        details |= {"target_kind": target.kind, "target": target.label}
    action = f"call_{body.control}"
    try:
        await run_in_threadpool(_audit, runtime, user, client, action, ("call", linkedid), details)
    except Exception:
        service.release(plan)
        raise
    try:
        state = await service.send(plan, target)
    except FAILURE_TYPES as exc:
        await _failed(runtime, user, client, ("call", linkedid), details | {"control": action}, exc)
    return ControlOut(state=state, state_label=STATES[state], message=_message(plan, target))


@router.post("/dial", summary="The dial pad: ring my phone, then this number")
async def post_dial(request: Request, body: DialIn, user: AgentUser) -> DialOut:
    runtime = runtime_of(request)
    if not user.extensions:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=NO_EXTENSION)
    try:
        e164 = await run_in_threadpool(_callable_number, runtime, body.number, "number")
    except ControlRefused as exc:
        raise _refusal(exc) from None
    client = audit.client_of(request)
    subject = ("number", mask_phone(e164))
    details = {"extension": user.extensions[0]}
    await run_in_threadpool(_audit, runtime, user, client, "dial", subject, details)
    interface = interface_of(user.extensions[0])
    try:
        channel_id = await originate_click_to_call(
            runtime.bridge, interface, e164, runtime.settings
        )
    except FAILURE_TYPES as exc:
        await _failed(runtime, user, client, subject, details | {"control": "dial"}, exc)
    masked = mask_phone(e164)
    message = f"正在呼叫您的分机，接起后拨打 {masked} / Ringing your phone, then {masked}"
    return DialOut(channel_id=channel_id, message=message)


async def _failed(
    runtime: Runtime,
    user: SignedInUser,
    client: str | None,
    subject: tuple[str, str],
    details: dict[str, Any],
    exc: Exception,
) -> None:
    """Log and audit a control Asterisk did not carry out, and raise its HTTP error."""
    code, message = next(v for kind, v in FAILURES.items() if isinstance(exc, kind))
    log.warning("%s by %s not done: %s", details.get("control"), user.username, type(exc).__name__)
    details = details | {"failure": type(exc).__name__}
    await run_in_threadpool(_audit, runtime, user, client, FAILED_ACTION, subject, details)
    raise HTTPException(code, detail=message) from None


def _audit(runtime: Runtime, user: SignedInUser, client: str | None, action: str,
           subject: tuple[str, str], details: dict[str, Any]) -> None:  # fmt: skip
    with runtime.sessions.begin() as db:
        audit.record(db, user=user, action=action, subject=subject, client=client,
                     details=details)  # fmt: skip
