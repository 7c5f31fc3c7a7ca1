"""The scheduler's campaign pages (the admin's do-not-call page is
:mod:`crm_bridge.campaigns.do_not_call`, the agent's side :mod:`crm_bridge.campaigns.agent`).

Routes (pages and forms are left out of the OpenAPI document):

- ``GET /campaigns``, ``POST /campaigns``: the list and a new campaign (scheduler or admin).
- ``GET /campaigns/{id}``: the campaign, its preview (who is in, who is left out and why),
  the controls, the live progress; ``POST /campaigns/{id}``: edit (draft or paused).
- ``POST /campaigns/{id}/action`` ``action=start|pause|resume|stop``.
- ``GET /campaigns/{id}/progress``: JSON for the live progress bar.
- ``GET /campaigns/{id}/greeting``: the campaign's greeting as Asterisk plays it (8 kHz WAV),
  for the page's player: by the campaign's id, from ``<data_dir>/greetings`` only.
- ``GET /campaigns/{id}/export?format=xlsx|csv``: the results (audited).

Every form carries the session's CSRF token. A greeting upload is converted to what Asterisk
plays (:mod:`crm_bridge.campaigns.greetings`: 8 kHz mono 16-bit WAV, whatever it came as), stored
in ``<data_dir>/greetings`` under a generated name; its length is shown and the page plays it
back (only the campaign's own file, looked up by the campaign's id, never by a name sent).
A refused upload keeps the rest of the form as posted. A message campaign cannot start without
a greeting.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, HTTPException, Query, Request, status
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.datastructures import UploadFile

from crm_bridge.accounts import audit
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.campaigns import greetings, store
from crm_bridge.campaigns.audience import Audience, is_marketing
from crm_bridge.campaigns.dial_decision import PolicyIn, preview
from crm_bridge.campaigns.page_kit import (
    PREVIEW_SAMPLE,
    RULE_FIELDS,
    STATUS_LABELS,
    CheckedForm,
    Scheduler,
    form_of,
    load,
    new_form,
    page,
    sample_rows,
    save_greeting,
    validated_form,
)
from crm_bridge.db.models import (
    Campaign,
    CampaignTarget,
)
from crm_bridge.runtime import RuntimeDep, runtime_of
from crm_bridge.web.exports import XLSX, to_csv, to_xlsx
from crm_bridge.web.language import label_half, language_of
from crm_bridge.web.pages import (
    RowId,
)

log = logging.getLogger(__name__)


router = APIRouter(include_in_schema=False)

NO_GREETING_FILE = "这个活动没有问候录音 / This campaign has no greeting recording"


def list_page(
    request: Request, user: SignedInUser, checked: CheckedForm | None = None, code=200
) -> Response:
    """The list and the new-campaign form (as typed, with what is wrong, after a refusal)."""
    with runtime_of(request).sessions() as session:
        campaigns = session.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
    context = {
        "campaigns": campaigns,
        "errors": checked.errors if checked else [],
        "field_errors": checked.field_errors if checked else {},
        "posted_form": checked.typed if checked else new_form(),
    }
    return page(request, user, "campaigns.html", context, code)


@router.get("/campaigns")
def campaigns_page(request: Request, user: Scheduler) -> Response:
    return list_page(request, user)


@router.post("/campaigns")
async def create_campaign(request: Request, runtime: RuntimeDep, user: Scheduler) -> Response:
    form = await request.form()
    checked = validated_form(form)
    greeting = await _greeting(request, form, checked)
    if checked.refused:
        return list_page(request, user, checked, status.HTTP_400_BAD_REQUEST)
    data, stored = checked.data, checked.stored
    assert data is not None
    with runtime.sessions.begin() as session:
        campaign = Campaign(
            name=data.name.strip(),
            kind=data.kind,
            mode=data.mode,
            greeting_file=greeting,
            created_by=user.username,
            **stored,
        )
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    return RedirectResponse(f"/campaigns/{campaign_id}", status.HTTP_303_SEE_OTHER)


async def _greeting(request: Request, form, checked: CheckedForm) -> str | None:
    """The greeting of this post: an upload, stored (a refused one is said beside its field),
    else the one an earlier, refused post of the form stored. The form carries it on, so an
    error elsewhere never asks for the upload again."""
    folder = runtime_of(request).settings.greetings_dir
    upload = form.get("greeting")
    name = greetings.already_stored(folder, form.get("kept_greeting"))
    if isinstance(upload, UploadFile) and upload.filename:
        try:
            name = await save_greeting(upload, folder)
        except greetings.GreetingRefused as exc:
            checked.field_errors["greeting"] = str(exc)
    checked.typed["kept_greeting"] = name or ""
    checked.typed["kept_greeting_seconds"] = greetings.seconds_of(folder, name)
    return name


def detail(
    request: Request,
    user: SignedInUser,
    campaign_id: int,
    errors=(),
    done="",
    checked: CheckedForm | None = None,
):
    """The campaign's page; its form as typed, with what is wrong, after a refused edit."""
    campaign = load(request, campaign_id)
    settings = runtime_of(request).settings
    now = datetime.now(UTC)
    audience = Audience(ids=[])
    with runtime_of(request).sessions() as session:
        if campaign.status == "draft":
            audience = runtime_of(request).audience.select(
                campaign.rules, now.astimezone(settings.zone).date(), campaign.kind
            )
            ids = audience.ids
        else:
            ids = list(
                session.scalars(
                    select(CampaignTarget.customer_id)
                    .where(
                        CampaignTarget.campaign_id == campaign_id,
                        CampaignTarget.state == "pending",
                    )
                    .order_by(CampaignTarget.id)
                )
            )
        policy = store.campaign_policy(campaign, settings.timezone)
        result = preview(session, ids, now, policy, campaign.id, audience.left_out)
        sample = sample_rows(session, result.included[:PREVIEW_SAMPLE])
        left_out = sample_rows(session, list(result.excluded)[:PREVIEW_SAMPLE], result.excluded)
        progress = store.progress(session, campaign_id)
    context = {
        "campaign": campaign,
        "form": checked.typed if checked else form_of(campaign),
        "form_campaign": campaign,
        "field_errors": checked.field_errors if checked else {},
        "preview": result,
        "sample": sample,
        "left_out": left_out,
        "unmatched": audience.unmatched,
        "marketing": is_marketing(campaign.kind),
        "progress": progress,
        "errors": [*errors, *(checked.errors if checked else [])],
        "done": done,
        "editable": campaign.status in ("draft", "paused"),
        "on_machine": PolicyIn.model_validate(campaign.policy or {}).on_machine,
        "greeting_seconds": greetings.seconds_of(settings.greetings_dir, campaign.greeting_file),
    }
    code = status.HTTP_400_BAD_REQUEST if errors or (checked and checked.refused) else 200
    return page(request, user, "campaign.html", context, code)


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, user: Scheduler, campaign_id: RowId, done: str = ""
) -> Response:
    return detail(request, user, campaign_id, done="已保存 / Saved" if done == "saved" else "")


@router.post("/campaigns/{campaign_id}")
async def edit_campaign(
    request: Request, runtime: RuntimeDep, user: Scheduler, campaign_id: RowId
) -> Response:
    campaign = load(request, campaign_id)
    if campaign.status not in ("draft", "paused"):
        return detail(
            request,
            user,
            campaign_id,
            ["只能修改草稿或暂停的活动 / Only draft or paused campaigns can be edited"],
        )
    form = await request.form()
    checked = validated_form(form, need_rules=campaign.status == "draft")
    if campaign.status != "draft":  # its list is fixed: the form shows the stored rules
        stored_rules = form_of(campaign)
        checked.typed |= {key: stored_rules[key] for key in RULE_FIELDS}
    greeting = await _greeting(request, form, checked)
    if checked.refused:
        return detail(request, user, campaign_id, checked=checked)
    data, stored = checked.data, checked.stored
    assert data is not None
    with runtime.sessions.begin() as session:
        row = session.get(Campaign, campaign_id)
        assert row is not None
        row.name, row.kind, row.mode = data.name.strip(), data.kind, data.mode
        row.policy = stored["policy"]
        if row.status == "draft":
            row.rules = stored["rules"]
        if greeting:
            row.greeting_file = greeting
    return RedirectResponse(f"/campaigns/{campaign_id}?done=saved", status.HTTP_303_SEE_OTHER)


@router.post("/campaigns/{campaign_id}/action")
def campaign_action(
    request: Request,
    runtime: RuntimeDep,
    user: Scheduler,
    campaign_id: RowId,
    action: Annotated[Literal["start", "pause", "resume", "stop"], Form()],
) -> Response:
    settings = runtime.settings
    now = datetime.now(UTC)
    try:
        with runtime.sessions.begin() as session:
            if action == "start":
                store.start_campaign(
                    session, campaign_id, now, settings.zone, settings.number_region,
                    runtime.audience.select,
                )  # fmt: skip
            else:
                store.set_status(session, campaign_id, action, now)
    except store.CampaignError as exc:
        return detail(request, user, campaign_id, [str(exc)])
    log.info("campaign %s: %s by %s", campaign_id, action, user.username)
    return RedirectResponse(f"/campaigns/{campaign_id}", status.HTTP_303_SEE_OTHER)


@router.get("/campaigns/{campaign_id}/progress")
def campaign_progress(
    request: Request, runtime: RuntimeDep, user: Scheduler, campaign_id: RowId
) -> JSONResponse:
    load(request, campaign_id)
    with runtime.sessions() as session:
        progress = store.progress(session, campaign_id)
    return JSONResponse(
        {
            "status": progress.status,
            "status_label": label_half(STATUS_LABELS[progress.status], language_of(request, user)),
            "targets": progress.targets,
            "finished": progress.finished,
            "by_state": progress.by_state,
            "by_outcome": progress.by_outcome,
            "messages_left": progress.messages_left,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.get("/campaigns/{campaign_id}/greeting")
def campaign_greeting(
    request: Request, runtime: RuntimeDep, user: Scheduler, campaign_id: RowId
) -> Response:
    campaign = load(request, campaign_id)
    path = greetings.stored_path(runtime.settings.greetings_dir, campaign.greeting_file)
    if path is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_GREETING_FILE)
    return FileResponse(path, media_type="audio/wav", headers={"Cache-Control": "no-store"})


@router.get("/campaigns/{campaign_id}/export")
def campaign_export(
    request: Request,
    runtime: RuntimeDep,
    user: Scheduler,
    campaign_id: RowId,
    fmt: Annotated[Literal["xlsx", "csv"], Query(alias="format")],
) -> Response:
    load(request, campaign_id)
    with runtime.sessions.begin() as session:
        rows = store.result_rows(session, campaign_id)  # read, then audited
        audit.record(
            session,
            user=user,
            action="export",
            subject=("campaign", campaign_id),
            client=audit.client_of(request),
            details={"format": fmt, "rows": len(rows)},
        )
    name = f"campaign-{campaign_id}-results.{fmt}"
    disposition = {"Content-Disposition": f'attachment; filename="{name}"'}
    if fmt == "csv":
        body = to_csv(store.RESULT_HEADERS, rows)
        return Response(body, media_type="text/csv; charset=utf-8", headers=disposition)
    body = to_xlsx(f"campaign {campaign_id}", store.RESULT_HEADERS, rows)
    return Response(body, media_type=XLSX, headers=disposition)


# ------------------------------------------------------------------ do-not-call (admin)


# ------------------------------------------------------------------ the agent's opt-out


# ------------------------------------------------------------------ agent-mode calls


# ------------------------------------------------------------------ preview mode
