"""Listen, whisper, barge in the browser.

- ``GET /supervisor/supervise``: the supervisor's page: their extension and queues, the calls
  of those queues going on now (each with the three buttons), and every listen going on.
- ``POST /supervisor/supervise/{linkedid}`` ``{"mode": "listen" | "whisper" | "barge"}`` (JSON,
  ``X-CSRF-Token``): ring the supervisor's own phone (their first extension) into that call;
  answers 202 with ``message`` and ``session``. The wallboard, the live call page and the page
  above post here (``web/static/supervise.js``).

Only the role ``supervisor``, only for the calls of the queues they supervise
(``users.supervised_queues``). Each use is written to the audit log (action ``listen``,
``whisper`` or ``barge``, subject the call) before the phone is rung, and a use Asterisk did
not place gets a second entry, ``supervise_failed``, with the reason. Refusals have a zh-CN /
English ``detail``: 400 an unknown mode or no extension, 403 not a supervisor or not their
queue, 404 no such call in progress, 409 not answered yet or already listened to, 503/504/502
when the phone system is away, does not answer or refuses; nothing is sent to Asterisk then.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts import audit, auth
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.calls.dialing import (
    AMI_DOWN,
    AMI_NO_ANSWER,
    ORIGINATE_REFUSED,
    OriginateRefused,
)
from crm_bridge.calls.in_progress import LinkedId
from crm_bridge.runtime import runtime_of
from crm_bridge.supervise.domain import (
    MODES,
    NOT_STARTED,
    SUPERVISOR_ROLE,
    SupervisionRefused,
    Supervisor,
)
from crm_bridge.supervise.service import Supervision, SupervisionSession
from crm_bridge.supervision.page_kit import (
    NAV,
    SUPERVISOR_PAGE_HEADERS,
    SUPERVISOR_ROLES,
)
from crm_bridge.web.pages import ROLE_LABELS, page_templates
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiActionLost, AmiActionTimeout, AmiNotConnected

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).resolve().parent / "templates")
SupervisorDesk = Annotated[SignedInUser, Depends(auth.require_role(*SUPERVISOR_ROLES))]
"""Who may open the page (admins see who is listening)."""
SupervisorOnly = Annotated[SignedInUser, Depends(auth.require_role(SUPERVISOR_ROLE))]
"""Who may listen: supervisors only (which calls: :func:`~crm_bridge.supervise.domain.decide`)."""
FAILED_ACTION = "supervise_failed"
FAILURES: dict[type[Exception], tuple[int, str]] = {
    AmiNotConnected: (status.HTTP_503_SERVICE_UNAVAILABLE, AMI_DOWN),
    AmiActionTimeout: (status.HTTP_504_GATEWAY_TIMEOUT, AMI_NO_ANSWER),
    AmiActionLost: (status.HTTP_504_GATEWAY_TIMEOUT, AMI_NO_ANSWER),
    OriginateRefused: (status.HTTP_502_BAD_GATEWAY, ORIGINATE_REFUSED),
    UnsafeAmiValue: (status.HTTP_400_BAD_REQUEST, ORIGINATE_REFUSED),
}
"""What a use that was not placed is answered with."""
FAILURE_TYPES = tuple(FAILURES)


class SuperviseIn(BaseModel):
    mode: str = Field(max_length=16, description="listen, whisper or barge")


def _service(request: Request) -> Supervision:
    service = getattr(runtime_of(request), "supervise", None)
    if service is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_STARTED)
    return service


def supervisor_of(user: SignedInUser) -> Supervisor:
    return Supervisor(user.username, user.role, user.extensions, user.supervised_queues)


def ringing_message(session: SupervisionSession) -> str:
    zh, en = MODES[session.mode].split()
    extension = session.target.extension
    return (f"正在呼叫您的分机 {extension}，接起即开始{zh}坐席 {session.target.agent} 的通话 / "
            f"Ringing your phone {extension}: pick up to {en.lower()} "
            f"(agent {session.target.agent})")  # fmt: skip


@router.get("/supervisor/supervise")
async def supervise_page(request: Request, user: SupervisorDesk) -> Response:
    service = _service(request)
    mine = set(user.supervised_queues)
    calls = [call for call in service.calls()
             if call.queue in mine and call.answered_at is not None and call.agent]  # fmt: skip
    listened = {s.target.linkedid: s.summary() for s in service.sessions.values()}
    context = {"user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
               "nav": NAV, "here": request.url.path, "modes": MODES, "calls": calls,
               "listened": listened, "may_listen": user.role == SUPERVISOR_ROLE,
               "extension": user.extensions[0] if user.extensions else "",
               "queues": user.supervised_queues}  # fmt: skip
    return templates.TemplateResponse(
        request, "supervise.html", context, headers=SUPERVISOR_PAGE_HEADERS
    )


@router.post("/supervisor/supervise/{linkedid}", status_code=status.HTTP_202_ACCEPTED)
async def supervise_call(
    request: Request, linkedid: LinkedId, body: SuperviseIn, user: SupervisorOnly
) -> dict[str, Any]:
    service = _service(request)
    try:
        session = service.reserve(supervisor_of(user), body.mode, linkedid)
    except SupervisionRefused as exc:
        raise HTTPException(exc.status, detail=exc.message) from None
    client = audit.client_of(request)
    try:
        await run_in_threadpool(_audit, request, user, session, client, session.mode, None)
    except Exception:
        service.release(session)
        raise
    try:
        await service.ring(session)
    except FAILURE_TYPES as exc:
        service.release(session)
        code, message = next(v for kind, v in FAILURES.items() if isinstance(exc, kind))
        log.warning("%s of call %s by %s not placed: %s", session.mode, linkedid,
                    user.username, type(exc).__name__)  # fmt: skip
        await run_in_threadpool(_audit, request, user, session, client, FAILED_ACTION,
                                type(exc).__name__)  # fmt: skip
        raise HTTPException(code, detail=message) from None
    return {"message": ringing_message(session), "session": session.summary()}


def _audit(request: Request, user: SignedInUser, session: SupervisionSession,
           client: str | None, action: str, failure: str | None) -> None:  # fmt: skip
    target = session.target
    details = {"mode": session.mode, "queue": target.queue, "agent": target.agent,
               "extension": target.extension, "session": session.channel_id}  # fmt: skip
    if failure is not None:
        details["failure"] = failure
    with runtime_of(request).sessions.begin() as db:
        audit.record(db, user=user, action=action, subject=("call", target.linkedid),
                     client=client, details=details)  # fmt: skip
