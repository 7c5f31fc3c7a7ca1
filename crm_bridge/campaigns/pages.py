"""The scheduler's campaign pages, the admin's do-not-call page, and the agent's opt-out.

Routes (pages and forms are left out of the OpenAPI document):

- ``GET /campaigns``, ``POST /campaigns``: the list and a new campaign (scheduler or admin).
- ``GET /campaigns/{id}``: the campaign, its preview (who is in, who is left out and why),
  the controls, the live progress; ``POST /campaigns/{id}``: edit (draft or paused).
- ``POST /campaigns/{id}/action`` ``action=start|pause|resume|stop``.
- ``GET /campaigns/{id}/progress``: JSON for the live progress bar.
- ``GET /campaigns/{id}/export?format=xlsx|csv``: the results (audited).
- ``GET/POST /admin/do-not-call``, ``POST /admin/do-not-call/{id}/delete``,
  ``POST /admin/opt-outs``, ``POST /admin/opt-outs/{id}/delete``: admins only.
- ``GET /me/campaigns``: preview campaigns, each with the next customer who may be called now;
  ``POST /me/campaigns/{id}/targets/{target_id}/dial``: ring the agent's phone, then that
  customer (checked again, its attempt committed first).
- ``POST /me/opt-out`` ``{customer_id, linkedid, note}``: an agent records an opt-out said on a
  call that rang them, for a customer on that call (admins record the others on
  ``/admin/do-not-call``).
- ``GET /me/campaign-calls/{linkedid}``: the campaign and customer of an agent-mode call
  that rang the agent (404 otherwise); ``POST /me/campaign-calls/{linkedid}/visit``
  ``{place, visited_at, opinions, suggestions}``: the return-visit form, saved as a visit record.

Every form carries the session's CSRF token. A greeting upload is converted to what Asterisk
plays (:mod:`crm_bridge.campaigns.greetings`: 8 kHz mono 16-bit WAV, whatever it came as), stored
in ``<data_dir>/greetings`` under a generated name, and never served back; its length is shown.
A refused upload keeps the rest of the form as posted. A message campaign cannot start without
a greeting.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import delete, select
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from crm_bridge.accounts import auth
from crm_bridge.accounts.auth import SignedInUser
from crm_bridge.campaigns import greetings as greetings
from crm_bridge.campaigns import store as store
from crm_bridge.campaigns.rules import (
    FESTIVALS,
    REASON_LABELS,
    PolicyIn,
    parse_rules,
    preview,
    select_audience,
)
from crm_bridge.customers.numbers import mask_phone, normalize_phone
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignTarget,
    Customer,
    CustomerOptOut,
    DoNotCall,
    VisitRecord,
)
from crm_bridge.pops.api import (
    AMI_DOWN,
    AMI_NO_ANSWER,
    LINKEDID_PATTERN,
    NO_SUCH_CALL,
    ORIGINATE_REFUSED,
    CustomerId,
    LiveCalls,
    check_customer_on_call,
)
from crm_bridge.pops.work import (
    ORIGINATE_TIMEOUT_MS,
    agent_may_act,
    agents_of_calls_in_progress,
    interface_of,
    outside_line_exten,
)
from crm_bridge.supervision import audit
from crm_bridge.web.exports import to_csv, to_xlsx
from crm_bridge.web.pages import PAGE_HEADERS, ROLE_LABELS, TEMPLATES_DIR, RowId
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiActionLost, AmiActionTimeout, AmiNotConnected
from telephony.call_tracker import agent_from_interface
from telephony.dialer import OriginateRefused, OriginateRequest, send_originate

log = logging.getLogger(__name__)

PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
CAMPAIGN_PAGE_HEADERS = PAGE_HEADERS | {"Content-Security-Policy": PAGE_POLICY}
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
KIND_LABELS = {
    "return_visit": "回访 Return visit",
    "birthday": "生日祝福 Birthday",
    "festival": "节日问候 Festival",
    "complaint_followup": "投诉回访 Complaint follow-up",
    "promotion": "促销通知 Promotion",
}
MODE_LABELS = {
    "message": "播放录音 Message",
    "agent": "转坐席 Agent",
    "preview": "预览外呼 Preview",
}
STATUS_LABELS = {
    "draft": "草稿 Draft",
    "running": "进行中 Running",
    "paused": "已暂停 Paused",
    "stopped": "已停止 Stopped",
    "done": "已完成 Done",
}
OUTCOME_LABELS = {
    "answered": "接通 Answered",
    "busy": "忙 Busy",
    "no_answer": "未接 No answer",
    "congestion": "线路拥塞 Congestion",
    "failed": "失败 Failed",
    "lost": "未发出 Not placed",
    "unknown": "未知 Unknown",
}
WEEKDAYS = ("一", "二", "三", "四", "五", "六", "日")
ACTIONS = {
    "start": "开始 Start",
    "pause": "暂停 Pause",
    "resume": "继续 Resume",
    "stop": "停止 Stop",
}
PREVIEW_SAMPLE = 20

Scheduler = Annotated[SignedInUser, Depends(auth.require_role("scheduler", "admin"))]
AdminUser = Annotated[SignedInUser, Depends(auth.require_role("admin"))]
AgentUser = Annotated[SignedInUser, Depends(auth.require_role("agent", "supervisor", "admin"))]


class CampaignForm(BaseModel):
    """The campaign form's fields, as posted."""

    name: str = Field(min_length=1, max_length=128)
    kind: Literal["return_visit", "birthday", "festival", "complaint_followup", "promotion"]
    mode: Literal["message", "agent", "preview"]
    rule_birthday: bool = False
    rule_after_purchase: bool = False
    after_purchase_days: int = 7
    rule_top_spenders: bool = False
    top_n: int = 10
    include_important: bool = False
    rule_complaint_followup: bool = False
    complaint_days: int = 1
    rule_festival: bool = False
    festivals: list[str] = Field(default_factory=list)
    rule_uploaded: bool = False
    uploaded: str = Field(default="", max_length=2_000_000)
    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: list[int] = Field(default_factory=list)
    blackout: str = Field(default="", max_length=4000)
    max_attempts: int = 3
    retry_busy: float = 10
    retry_no_answer: float = 60
    retry_congestion: float = 5
    retry_failed: float = 30

    def rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = []
        if self.rule_birthday:
            rules.append({"kind": "birthday"})
        if self.rule_after_purchase:
            rules.append({"kind": "after_purchase", "days": self.after_purchase_days})
        if self.rule_top_spenders:
            rules.append(
                {
                    "kind": "top_spenders",
                    "top_n": self.top_n,
                    "include_important": self.include_important,
                }
            )
        if self.rule_complaint_followup:
            rules.append({"kind": "complaint_followup", "days_after": self.complaint_days})
        if self.rule_festival:
            rules.append({"kind": "festival", "festivals": self.festivals})
        if self.rule_uploaded:
            entries = [line.strip() for line in self.uploaded.replace(",", "\n").splitlines()]
            rules.append({"kind": "uploaded", "entries": [e for e in entries if e]})
        return rules

    def policy(self) -> dict[str, Any]:
        blackout = [part.strip() for part in self.blackout.replace("，", ",").split(",")]
        return {
            "start": self.start.isoformat("minutes"),
            "end": self.end.isoformat("minutes"),
            "weekdays": self.weekdays,
            "blackout_dates": [b for b in blackout if b],
            "max_attempts": self.max_attempts,
            "retry_minutes": {
                "busy": self.retry_busy,
                "no_answer": self.retry_no_answer,
                "congestion": self.retry_congestion,
                "failed": self.retry_failed,
            },
        }


def _form_values(form) -> dict[str, Any]:
    """The posted form as :class:`CampaignForm` takes it (checkboxes and repeated fields)."""
    values: dict[str, Any] = {k: v for k, v in form.items() if not isinstance(v, str) or v != ""}
    values.pop("csrf_token", None)
    values.pop("greeting", None)
    values["festivals"] = form.getlist("festivals")
    values["weekdays"] = form.getlist("weekdays")
    for flag in (
        "rule_birthday",
        "rule_after_purchase",
        "rule_top_spenders",
        "rule_complaint_followup",
        "rule_festival",
        "rule_uploaded",
        "include_important",
    ):
        values[flag] = flag in form
    return values


def _validated(
    form, need_rules: bool = True
) -> tuple[CampaignForm | None, dict[str, Any], list[str]]:
    """The form, its rules and policy checked; errors as zh-CN / English lines. A started
    campaign's list is fixed, so its edit form sends no rules (``need_rules=False``)."""
    errors: list[str] = []
    try:
        data = CampaignForm.model_validate(_form_values(form))
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return None, {}, errors
    try:
        rules = parse_rules(data.rules())
        policy = PolicyIn.model_validate(data.policy())
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        return None, {}, errors
    if need_rules and not rules:
        errors.append("请至少选择一条名单规则 / Pick at least one audience rule")
    return (
        data,
        {
            "rules": [r.model_dump(mode="json") for r in rules],
            "policy": policy.model_dump(mode="json"),
        },
        errors,
    )


async def save_greeting(upload: UploadFile, folder: Path) -> str:
    """Convert an uploaded greeting to what Asterisk plays and store it under a generated name
    in ``folder``; return the name. Raises :class:`GreetingRefused` (zh-CN / English)."""
    data = await upload.read(greetings.MAX_GREETING_BYTES + 1)
    return await run_in_threadpool(greetings.store, data, folder)


def campaigns_router() -> APIRouter:
    templates = Jinja2Templates(directory=TEMPLATES_DIR)
    router = APIRouter(include_in_schema=False)

    def page(request: Request, user: SignedInUser, name: str, context: dict[str, Any], code=200):
        context = {
            "user": user,
            "csrf_token": user.csrf_token,
            "role_labels": ROLE_LABELS,
            "kinds": KIND_LABELS,
            "modes": MODE_LABELS,
            "statuses": STATUS_LABELS,
            "outcomes": OUTCOME_LABELS,
            "reasons": REASON_LABELS,
            "festival_choices": FESTIVALS,
            "weekday_names": WEEKDAYS,
            "actions": ACTIONS,
            **context,
        }
        return templates.TemplateResponse(
            request, name, context, status_code=code, headers=CAMPAIGN_PAGE_HEADERS
        )

    def runtime(request: Request):
        return request.app.state.runtime

    def load(request: Request, campaign_id: int) -> Campaign:
        with runtime(request).sessions() as session:
            campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="没有这个活动 / No such campaign")
        return campaign

    def list_page(
        request: Request, user: SignedInUser, errors=(), code=200, posted: Campaign | None = None
    ) -> Response:
        """The list and the new-campaign form (refilled with ``posted`` after an error)."""
        with runtime(request).sessions() as session:
            campaigns = session.scalars(select(Campaign).order_by(Campaign.id.desc())).all()
        context = {
            "campaigns": campaigns,
            "errors": list(errors),
            "posted": posted,
            "posted_form": _form_of(posted) if posted is not None else None,
        }
        return page(request, user, "campaigns.html", context, code)

    @router.get("/campaigns")
    def campaigns_page(request: Request, user: Scheduler) -> Response:
        return list_page(request, user)

    @router.post("/campaigns")
    async def create_campaign(request: Request, user: Scheduler) -> Response:
        form = await request.form()
        data, stored, errors = _validated(form)
        if data is None or errors:
            return list_page(request, user, errors, status.HTTP_400_BAD_REQUEST)
        greeting, errors = await _greeting(request, form, errors)
        if errors:
            posted = Campaign(name=data.name, kind=data.kind, mode=data.mode, status="draft",
                              **stored)  # fmt: skip
            return list_page(request, user, errors, status.HTTP_400_BAD_REQUEST, posted)
        with runtime(request).sessions.begin() as session:
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

    async def _greeting(request: Request, form, errors: list[str]) -> tuple[str | None, list]:
        upload = form.get("greeting")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return None, errors
        try:
            return await save_greeting(upload, runtime(request).settings.greetings_dir), errors
        except greetings.GreetingRefused as exc:
            return None, [*errors, str(exc)]

    def detail(
        request: Request,
        user: SignedInUser,
        campaign_id: int,
        errors=(),
        done="",
        posted: Campaign | None = None,
    ):
        """The campaign's page; its form refilled with ``posted`` after a refused edit."""
        campaign = load(request, campaign_id)
        settings = runtime(request).settings
        now = datetime.now(UTC)
        with runtime(request).sessions() as session:
            if campaign.status == "draft":
                ids = select_audience(
                    session,
                    parse_rules(campaign.rules),
                    now.astimezone(settings.zone).date(),
                    settings.zone,
                    settings.number_region,
                )
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
            result = preview(session, ids, now, policy, campaign.id)
            sample = _sample(session, result.included[:PREVIEW_SAMPLE])
            left_out = _sample(session, list(result.excluded)[:PREVIEW_SAMPLE], result.excluded)
            progress = store.progress(session, campaign_id)
        context = {
            "campaign": campaign,
            "form": _form_of(posted or campaign),
            "form_campaign": posted or campaign,
            "preview": result,
            "sample": sample,
            "left_out": left_out,
            "progress": progress,
            "errors": list(errors),
            "done": done,
            "editable": campaign.status in ("draft", "paused"),
            "greeting_seconds": greetings.seconds_of(
                settings.greetings_dir, campaign.greeting_file
            ),
        }
        code = status.HTTP_400_BAD_REQUEST if errors else 200
        return page(request, user, "campaign.html", context, code)

    @router.get("/campaigns/{campaign_id}")
    def campaign_page(
        request: Request, user: Scheduler, campaign_id: RowId, done: str = ""
    ) -> Response:
        return detail(request, user, campaign_id, done="已保存 / Saved" if done == "saved" else "")

    @router.post("/campaigns/{campaign_id}")
    async def edit_campaign(request: Request, user: Scheduler, campaign_id: RowId) -> Response:
        campaign = load(request, campaign_id)
        if campaign.status not in ("draft", "paused"):
            return detail(
                request,
                user,
                campaign_id,
                ["只能修改草稿或暂停的活动 / Only draft or paused campaigns can be edited"],
            )
        form = await request.form()
        data, stored, errors = _validated(form, need_rules=campaign.status == "draft")
        if data is None or errors:
            return detail(request, user, campaign_id, errors)
        greeting, errors = await _greeting(request, form, errors)
        if errors:
            posted = Campaign(
                name=data.name, kind=data.kind, mode=data.mode, status=campaign.status,
                greeting_file=campaign.greeting_file,
                rules=stored["rules"] if campaign.status == "draft" else campaign.rules,
                policy=stored["policy"],
            )  # fmt: skip
            return detail(request, user, campaign_id, errors, posted=posted)
        with runtime(request).sessions.begin() as session:
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
        user: Scheduler,
        campaign_id: RowId,
        action: Annotated[Literal["start", "pause", "resume", "stop"], Form()],
    ) -> Response:
        settings = runtime(request).settings
        now = datetime.now(UTC)
        try:
            with runtime(request).sessions.begin() as session:
                if action == "start":
                    store.start_campaign(
                        session, campaign_id, now, settings.zone, settings.number_region
                    )
                else:
                    store.set_status(session, campaign_id, action, now)
        except store.CampaignError as exc:
            return detail(request, user, campaign_id, [str(exc)])
        log.info("campaign %s: %s by %s", campaign_id, action, user.username)
        return RedirectResponse(f"/campaigns/{campaign_id}", status.HTTP_303_SEE_OTHER)

    @router.get("/campaigns/{campaign_id}/progress")
    def campaign_progress(request: Request, user: Scheduler, campaign_id: RowId) -> JSONResponse:
        load(request, campaign_id)
        with runtime(request).sessions() as session:
            progress = store.progress(session, campaign_id)
        return JSONResponse(
            {
                "status": progress.status,
                "status_label": STATUS_LABELS[progress.status],
                "targets": progress.targets,
                "finished": progress.finished,
                "by_state": progress.by_state,
                "by_outcome": progress.by_outcome,
            },
            headers={"Cache-Control": "no-store"},
        )

    @router.get("/campaigns/{campaign_id}/export")
    def campaign_export(
        request: Request,
        user: Scheduler,
        campaign_id: RowId,
        fmt: Annotated[Literal["xlsx", "csv"], Query(alias="format")],
    ) -> Response:
        load(request, campaign_id)
        with runtime(request).sessions.begin() as session:
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

    def dnc_page(request: Request, user: SignedInUser, errors=(), code=200):
        with runtime(request).sessions() as session:
            numbers = session.scalars(select(DoNotCall).order_by(DoNotCall.id.desc())).all()
            opted = session.execute(
                select(CustomerOptOut, Customer.card_no, Customer.name)
                .join(Customer, Customer.id == CustomerOptOut.customer_id)
                .order_by(CustomerOptOut.id.desc())
            ).all()
        context = {
            "numbers": numbers,
            "opted": opted,
            "errors": list(errors),
            "mask": mask_phone,
        }
        return page(request, user, "admin_do_not_call.html", context, code)

    @router.get("/admin/do-not-call")
    def do_not_call_page(request: Request, user: AdminUser) -> Response:
        return dnc_page(request, user)

    @router.post("/admin/do-not-call")
    def add_number(
        request: Request,
        user: AdminUser,
        number: Annotated[str, Form(max_length=64)],
        note: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        settings = runtime(request).settings
        e164 = normalize_phone(number, settings.number_region, settings.outside_line_prefix).e164
        if e164 is None:
            return dnc_page(
                request,
                user,
                ["电话号码无效 / Not a usable phone number"],
                code=status.HTTP_400_BAD_REQUEST,
            )
        with runtime(request).sessions.begin() as session:
            store.add_do_not_call(session, e164, note.strip() or None, user.username)
        return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)

    @router.post("/admin/do-not-call/{entry_id}/delete")
    def remove_number(request: Request, user: AdminUser, entry_id: RowId) -> Response:
        with runtime(request).sessions.begin() as session:
            session.execute(delete(DoNotCall).where(DoNotCall.id == entry_id))
        return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)

    @router.post("/admin/opt-outs")
    def add_opt_out(
        request: Request,
        user: AdminUser,
        card_no: Annotated[str, Form(max_length=32)],
        note: Annotated[str, Form(max_length=256)] = "",
    ) -> Response:
        with runtime(request).sessions.begin() as session:
            customer_id = session.scalar(
                select(Customer.id).where(Customer.card_no == card_no.strip())
            )
            if customer_id is not None:
                store.opt_out(session, customer_id, "admin", note.strip() or None, user.username)
        if customer_id is None:
            return dnc_page(
                request,
                user,
                ["没有这个卡号 / No customer with this card no."],
                code=status.HTTP_400_BAD_REQUEST,
            )
        return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)

    @router.post("/admin/opt-outs/{entry_id}/delete")
    def remove_opt_out(request: Request, user: AdminUser, entry_id: RowId) -> Response:
        with runtime(request).sessions.begin() as session:
            session.execute(delete(CustomerOptOut).where(CustomerOptOut.id == entry_id))
        return RedirectResponse("/admin/do-not-call", status.HTTP_303_SEE_OTHER)

    # ------------------------------------------------------------------ the agent's opt-out

    @router.post(
        "/me/opt-out",
        include_in_schema=True,
        tags=["agent"],
        summary="The customer asked on the call not to be called by campaigns",
    )
    def agent_opt_out(
        request: Request, body: OptOutIn, user: AgentUser, rang: Rang, live: LiveCalls
    ) -> dict[str, int]:
        try:
            with runtime(request).sessions.begin() as session:
                may = agent_may_act(
                    session, body.linkedid, user.extensions, lambda lid: rang.get(lid, set())
                )
                if not may:
                    raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_CALL)
                check_customer_on_call(
                    session, body.linkedid, body.customer_id, live, runtime(request)
                )
                store.opt_out(session, body.customer_id, "call", body.note, user.username)
        except store.CampaignError as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
        return {"customer_id": body.customer_id}

    # ------------------------------------------------------------------ agent-mode calls

    def campaign_call(session, linkedid: str, user: SignedInUser, rang) -> tuple[Campaign, int]:
        found = store.campaign_for_attempt(session, linkedid)
        may = agent_may_act(session, linkedid, user.extensions, lambda lid: rang.get(lid, set()))
        campaign = session.get(Campaign, found[0]) if found and may else None
        if campaign is None or found is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="没有这个活动通话 / No such call")
        return campaign, found[1]

    @router.get(
        "/me/campaign-calls/{linkedid}",
        include_in_schema=True,
        tags=["agent"],
        summary="The campaign and customer of a campaign call that rang me",
    )
    def get_campaign_call(
        request: Request, linkedid: LinkedId, user: AgentUser, rang: Rang
    ) -> CampaignCallOut:
        with runtime(request).sessions() as session:
            campaign, customer_id = campaign_call(session, linkedid, user, rang)
            return CampaignCallOut(
                campaign_id=campaign.id,
                campaign_name=campaign.name,
                kind=campaign.kind,
                kind_label=KIND_LABELS[campaign.kind],
                customer_id=customer_id,
            )

    @router.post(
        "/me/campaign-calls/{linkedid}/visit",
        include_in_schema=True,
        tags=["agent"],
        summary="The return-visit form of a campaign call: becomes a visit record",
    )
    def post_visit(
        request: Request, linkedid: LinkedId, body: VisitIn, user: AgentUser, rang: Rang
    ) -> dict[str, int]:
        visited_at = body.visited_at or datetime.now(UTC)
        if visited_at.tzinfo is None:  # the form's time: the center's wall clock
            visited_at = visited_at.replace(tzinfo=runtime(request).settings.zone)
        with runtime(request).sessions.begin() as session:
            _, customer_id = campaign_call(session, linkedid, user, rang)
            call_id = session.scalar(select(Call.id).where(Call.linkedid == linkedid))
            visit = VisitRecord(
                customer_id=customer_id,
                visited_at=visited_at,
                place=_blank(body.place),
                channel="phone",
                opinions=_blank(body.opinions),
                suggestions=_blank(body.suggestions),
                visited_by=user.username,
                call_id=call_id,
            )
            session.add(visit)
            session.flush()
            return {"visit_id": visit.id, "customer_id": customer_id}

    # ------------------------------------------------------------------ preview mode

    @router.get("/me/campaigns")
    def preview_page(request: Request, user: AgentUser, done: str = "") -> Response:
        settings = runtime(request).settings
        now = datetime.now(UTC)
        rows = []
        with runtime(request).sessions() as session:
            campaigns = session.scalars(
                select(Campaign)
                .where(Campaign.status == "running", Campaign.mode == "preview")
                .order_by(Campaign.id)
            ).all()
            for campaign in campaigns:
                target_id = store.next_preview_target(session, campaign.id, now, settings.timezone)
                target = session.get(CampaignTarget, target_id) if target_id else None
                customer = session.get(Customer, target.customer_id) if target else None
                rows.append(
                    {
                        "campaign": campaign,
                        "target": target,
                        "customer": customer,
                        "phone": mask_phone(customer.phones[0].number_e164)
                        if customer and customer.phones
                        else "",
                    }
                )
        notice = {"dialled": "正在呼叫：请接起您的话机 / Calling: pick up your phone"}.get(done, "")
        return page(
            request, user, "agent_campaigns.html", {"rows": rows, "errors": [], "done": notice}
        )

    @router.post("/me/campaigns/{campaign_id}/targets/{target_id}/dial")
    async def preview_dial(
        request: Request, user: AgentUser, campaign_id: RowId, target_id: RowId
    ) -> Response:
        if not user.extensions:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=NO_EXTENSION)
        rt = runtime(request)
        ticket = await run_in_threadpool(
            _claim_preview, rt.sessions, campaign_id, target_id, rt.settings.timezone
        )
        if ticket is None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail=NOT_NOW)
        agent = agent_from_interface(interface_of(user.extensions[0]))
        call = OriginateRequest(
            channel=interface_of(user.extensions[0]),
            context="internal",
            exten=outside_line_exten(ticket.number_e164, rt.settings),
            channel_id=ticket.channel_id,
            action_id=ticket.action_id,
            caller_id=f'"{PREVIEW_CALLER_NAME}" <{agent}>',
            timeout_ms=ORIGINATE_TIMEOUT_MS,
            variables={"CAMPAIGN": str(campaign_id), "CUSTOMER_ID": str(ticket.customer_id)},
        )
        failed = await _originate_preview(rt, call)
        if failed is not None:
            outcome, code, detail = failed
            if outcome is not None:
                await run_in_threadpool(
                    store.record_outcome,
                    rt.sessions,
                    ticket.attempt_id,
                    outcome,
                    datetime.now(UTC),
                    rt.settings.timezone,
                )
            raise HTTPException(code, detail=detail)
        log.info(
            "preview call by %s: campaign %s, %s",
            user.username,
            campaign_id,
            mask_phone(ticket.number_e164),
        )
        return RedirectResponse("/me/campaigns?done=dialled", status.HTTP_303_SEE_OTHER)

    return router


NO_EXTENSION = "您的账号没有分机，无法外呼 / Your account has no extension to call from"
NOT_NOW = "此客户现在不能呼叫 / This customer cannot be called now"
PREVIEW_CALLER_NAME = "Campaign"


def _claim_preview(sessions, campaign_id: int, target_id: int, center_tz: str):
    """The attempt of a preview campaign's target, if it may be dialled now."""
    with sessions() as session:
        campaign = session.get(Campaign, campaign_id)
        target = session.get(CampaignTarget, target_id)
        if campaign is None or campaign.mode != "preview" or target is None:
            return None
        if target.campaign_id != campaign_id:
            return None
    return store.claim_attempt(sessions, target_id, datetime.now(UTC), center_tz)


async def _originate_preview(runtime, call: OriginateRequest) -> tuple | None:
    """Send the preview call: None when Asterisk queued it, else (outcome to record or None
    when it may have been placed, HTTP status, message)."""
    connection = runtime.bridge.links[0].connection
    try:
        if connection is None:
            raise AmiNotConnected("not started")
        await send_originate(connection, call)
    except AmiNotConnected:
        return "lost", status.HTTP_503_SERVICE_UNAVAILABLE, AMI_DOWN
    except (OriginateRefused, UnsafeAmiValue):
        return "failed", status.HTTP_502_BAD_GATEWAY, ORIGINATE_REFUSED
    except (AmiActionTimeout, AmiActionLost):
        return None, status.HTTP_504_GATEWAY_TIMEOUT, AMI_NO_ANSWER
    return None


LinkedId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


async def _rang_now(request: Request) -> dict[str, set[str]]:
    """The agents of each call in progress (read on the event loop, where it changes)."""
    return agents_of_calls_in_progress(request.app.state.runtime.bridge)


Rang = Annotated[dict[str, set[str]], Depends(_rang_now)]


class CampaignCallOut(BaseModel):
    campaign_id: int
    campaign_name: str
    kind: str
    kind_label: str
    customer_id: int


class OptOutIn(BaseModel):
    customer_id: CustomerId
    linkedid: str = Field(pattern=LINKEDID_PATTERN, description="the call it was said on")
    note: str | None = Field(default=None, max_length=256)


class VisitIn(BaseModel):
    """回访表: 地点, 时间, 意见, 建议."""

    place: str | None = Field(default=None, max_length=128)
    visited_at: datetime | None = None
    """Without an offset: the center's time (the form shows the center's clock)."""
    opinions: str | None = Field(default=None, max_length=2000)
    suggestions: str | None = Field(default=None, max_length=2000)


def _blank(text: str | None) -> str | None:
    return (text or "").strip() or None


def _sample(session, ids: list[int], reasons: dict[int, str] | None = None) -> list[dict]:
    """Names, card nos. and masked first numbers of a few customers, for the preview."""
    if not ids:
        return []
    rows = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))}
    out = []
    for cid in ids:
        customer = rows[cid]
        phone = customer.phones[0].number_e164 if customer.phones else ""
        out.append(
            {
                "card_no": customer.card_no,
                "name": customer.name,
                "phone": mask_phone(phone),
                "reason": REASON_LABELS.get((reasons or {}).get(cid, ""), ""),
            }
        )
    return out


def _form_of(campaign: Campaign) -> dict[str, Any]:
    """The campaign as the edit form shows it."""
    rules = {rule["kind"]: rule for rule in campaign.rules or []}
    policy = PolicyIn.model_validate(campaign.policy or {})
    uploaded = rules.get("uploaded", {}).get("entries", [])
    return {
        "rules": rules,
        "uploaded": "\n".join(uploaded),
        "policy": policy,
        "blackout": ", ".join(d.isoformat() for d in policy.blackout_dates),
    }
