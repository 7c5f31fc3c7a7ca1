"""The survey's page (supervisors and admins).

- ``GET /supervisor/survey``: which queues have the survey on (set on ``/supervisor/queues``),
  each prompt (the default's words, or the upload's length, who uploaded it and when), and the
  upload forms.
- ``POST /supervisor/survey/prompts/{kind}`` (multipart: ``prompt``, the audio file;
  ``kind`` ``ask``, ``invalid`` or ``thanks``): the prompt is converted to the 8 kHz WAV
  Asterisk plays and plays from the next call.
- ``POST /supervisor/survey/prompts/{kind}/default``: back to the default prompt.

A file that is not audio (or silent, too long, too big) is refused beside its field, with
nothing changed; every change is in the audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from crm_bridge.accounts import audit, auth
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.campaigns import greetings
from crm_bridge.db.models import QueueSetting
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.supervision.page_kit import NAV, SUPERVISOR_PAGE_HEADERS
from crm_bridge.survey import prompts
from crm_bridge.survey.domain import DEFAULT_WORDS, PROMPT_KINDS, UNKNOWN_KIND
from crm_bridge.web.pages import ROLE_LABELS, page_templates

router = APIRouter(include_in_schema=False)
templates = page_templates(Path(__file__).resolve().parent / "templates")

PAGE = "/supervisor/survey"
UPLOAD_FIELD = "prompt"
NO_FILE = "请选择录音文件 / Choose an audio file"
Supervisor = Annotated[SignedInUser, Depends(auth.require_role("supervisor", "admin"))]


def survey_page(request: Request, user: SignedInUser, errors: dict[str, str] | None = None,
                code: int = 200) -> Response:  # fmt: skip
    runtime = runtime_of(request)
    with runtime.sessions() as session:
        uploads = prompts.uploads(session)
        on = list(session.scalars(
            select(QueueSetting.queue).where(QueueSetting.survey).order_by(QueueSetting.queue)
        ))  # fmt: skip
    context: dict[str, Any] = {
        "user": user, "csrf_token": user.csrf_token, "role_labels": ROLE_LABELS,
        "nav": NAV, "here": request.url.path, "kinds": PROMPT_KINDS, "words": DEFAULT_WORDS,
        "uploads": uploads, "queues_on": on,
        "running": runtime.routing is not None, "errors": errors or {},
    }  # fmt: skip
    return templates.TemplateResponse(request, "survey.html", context, status_code=code,
                                      headers=SUPERVISOR_PAGE_HEADERS)  # fmt: skip


def _known_kind(kind: str) -> str:
    if kind not in PROMPT_KINDS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=UNKNOWN_KIND)
    return kind


@router.get(PAGE)
def survey_settings(request: Request, user: Supervisor) -> Response:
    return survey_page(request, user)


@router.post(PAGE + "/prompts/{kind}")
async def upload_prompt(request: Request, runtime: RuntimeDep, user: Supervisor,
                        kind: str) -> Response:  # fmt: skip
    kind = _known_kind(kind)
    upload = (await request.form()).get(UPLOAD_FIELD)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return survey_page(request, user, {kind: NO_FILE}, 400)
    folder = runtime.settings.greetings_dir
    data = await upload.read(greetings.MAX_GREETING_BYTES + 1)
    try:
        name = await run_in_threadpool(greetings.store, data, folder)
    except greetings.GreetingRefused as exc:
        return survey_page(request, user, {kind: str(exc)}, 400)
    seconds = greetings.seconds_of(folder, name) or 0.0
    with runtime.sessions.begin() as session:
        replaced = prompts.save_upload(session, kind, name, seconds, user.username)
        audit.record(session, user=user, action="survey_prompt", subject=("survey_prompt", kind),
                     client=audit.client_of(request),
                     details={"file": name, "seconds": round(seconds, 2)})  # fmt: skip
    prompts.remove_replaced(folder, replaced)
    return RedirectResponse(PAGE, status.HTTP_303_SEE_OTHER)


@router.post(PAGE + "/prompts/{kind}/default")
def default_prompt(request: Request, runtime: RuntimeDep, user: Supervisor,
                   kind: str) -> Response:  # fmt: skip
    kind = _known_kind(kind)
    with runtime.sessions.begin() as session:
        replaced = prompts.back_to_default(session, kind)
        audit.record(session, user=user, action="survey_prompt_default",
                     subject=("survey_prompt", kind), client=audit.client_of(request))  # fmt: skip
    prompts.remove_replaced(runtime.settings.greetings_dir, replaced)
    return RedirectResponse(PAGE, status.HTTP_303_SEE_OTHER)
