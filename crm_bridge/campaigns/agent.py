"""The agent's side of campaigns (JSON, in the OpenAPI document under "agent"):

- ``GET /me/campaigns``: preview campaigns, each with its customer's card and history: the
  customer of the agent's own call until that call is settled (its outcome recorded from the
  call log once it ends), else the next who may be called now;
  ``POST /me/campaigns/{id}/targets/{target_id}/dial``: ring the agent's phone, then that
  customer (checked again, its attempt committed first; refused while a preview call the agent
  placed is unsettled).
- ``POST /me/opt-out`` ``{customer_id, linkedid, note}``: an agent records an opt-out said on a
  call that rang them, for a customer on that call (admins record the others on
  ``/admin/do-not-call``).
- ``GET /me/campaign-calls/{linkedid}``: the campaign and customer of an agent-mode call
  that rang the agent (404 otherwise); ``POST /me/campaign-calls/{linkedid}/visit``
  ``{place, visited_at, opinions, suggestions}``: the return-visit form, saved as a visit record.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import and_, or_, select
from starlette.concurrency import run_in_threadpool

from crm_bridge.accounts.auth import AgentUser, SignedInUser
from crm_bridge.accounts.users import UserInputError
from crm_bridge.calls.dialing import (
    AMI_DOWN,
    AMI_NO_ANSWER,
    NO_EXTENSION,
    ORIGINATE_REFUSED,
    ORIGINATE_TIMEOUT_MS,
    interface_of,
    outside_line_exten,
)
from crm_bridge.calls.in_progress import (
    LINKEDID_PATTERN,
    NO_SUCH_CALL,
    LinkedId,
    LiveCalls,
    Rang,
    agent_may_act,
)
from crm_bridge.calls.parties import check_customer_on_call
from crm_bridge.campaigns import store
from crm_bridge.campaigns.page_kit import KIND_LABELS, blank, page
from crm_bridge.customers.card import build_cards
from crm_bridge.customers.card_queries import MAX_CARDS
from crm_bridge.customers.numbers import mask_phone
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignTarget,
    DialAttempt,
    VisitRecord,
)
from crm_bridge.runtime import RuntimeDep
from crm_bridge.web.pages import (
    CustomerId,
    RowId,
    input_error,
)
from telephony.ami_codec import UnsafeAmiValue
from telephony.ami_connection import AmiActionLost, AmiActionTimeout, AmiNotConnected
from telephony.call_tracker import agent_from_interface
from telephony.dialer import OriginateRefused, OriginateRequest, send_originate

log = logging.getLogger(__name__)

NOT_NOW = (
    "此客户现在不能呼叫，或您上一通预览外呼尚未结束 / This customer cannot be called now, or "
    "your last preview call is not settled yet"
)


PREVIEW_CALLER_NAME = "Campaign"


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


router = APIRouter(include_in_schema=False)


@router.post(
    "/me/opt-out",
    include_in_schema=True,
    tags=["agent"],
    summary="The customer asked on the call not to be called by campaigns",
)
def agent_opt_out(
    request: Request,
    runtime: RuntimeDep,
    body: OptOutIn,
    user: AgentUser,
    rang: Rang,
    live: LiveCalls,
) -> dict[str, int]:
    try:
        with runtime.sessions.begin() as session:
            may = agent_may_act(
                session, body.linkedid, user.extensions, lambda lid: rang.get(lid, set())
            )
            if not may:
                raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NO_SUCH_CALL)
            check_customer_on_call(session, body.linkedid, body.customer_id, live, runtime.numbers)
            store.opt_out(session, body.customer_id, "call", body.note, user.username)
    except store.CampaignError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from None
    except UserInputError as exc:
        raise input_error(str(exc), exc.errors) from None
    return {"customer_id": body.customer_id}


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
    request: Request, runtime: RuntimeDep, linkedid: LinkedId, user: AgentUser, rang: Rang
) -> CampaignCallOut:
    with runtime.sessions() as session:
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
    request: Request,
    runtime: RuntimeDep,
    linkedid: LinkedId,
    body: VisitIn,
    user: AgentUser,
    rang: Rang,
) -> dict[str, int]:
    visited_at = body.visited_at or datetime.now(UTC)
    if visited_at.tzinfo is None:  # the form's time: the center's wall clock
        visited_at = visited_at.replace(tzinfo=runtime.settings.zone)
    with runtime.sessions.begin() as session:
        _, customer_id = campaign_call(session, linkedid, user, rang)
        call_id = session.scalar(select(Call.id).where(Call.linkedid == linkedid))
        visit = VisitRecord(
            customer_id=customer_id,
            visited_at=visited_at,
            place=blank(body.place),
            channel="phone",
            opinions=blank(body.opinions),
            suggestions=blank(body.suggestions),
            visited_by=user.username,
            call_id=call_id,
        )
        session.add(visit)
        session.flush()
        return {"visit_id": visit.id, "customer_id": customer_id}


@router.get("/me/campaigns")
def preview_page(
    request: Request, runtime: RuntimeDep, user: AgentUser, done: str = ""
) -> Response:
    """Each running preview campaign with its customer: the one the agent's unsettled call is
    with (no other is offered until it is settled), else the next who may be called now; each
    with their card and history."""
    settings = runtime.settings
    now = datetime.now(UTC)
    with runtime.sessions() as session:
        held = {a.campaign_id: a for a in store.held_preview_attempts(session, user.username)}
        campaigns = session.scalars(
            select(Campaign)
            .where(
                or_(
                    and_(Campaign.status == "running", Campaign.mode == "preview"),
                    Campaign.id.in_(list(held)),
                )
            )
            .order_by(Campaign.id)
        ).all()
        rows = [_preview_row(session, c, held.get(c.id), now, settings) for c in campaigns]
        shown = [row["customer_id"] for row in rows if row["customer_id"]]
        today = now.astimezone(settings.zone).date()
        cards = {
            card.id: card
            for at in range(0, len(shown), MAX_CARDS)
            for card in build_cards(
                session, shown[at : at + MAX_CARDS], today=today, zone=settings.zone
            )
        }
    for row in rows:
        row["card"] = cards.get(row["customer_id"])
    context = {"rows": rows, "errors": [], "done": PREVIEW_NOTICES.get(done, ""),
               "held": bool(held), "mask": mask_phone}  # fmt: skip
    return page(request, user, "agent_campaigns.html", context)


PREVIEW_NOTICES = {"dialled": "正在呼叫：请接起您的话机 / Calling: pick up your phone"}


def _preview_row(session, campaign: Campaign, held: DialAttempt | None, now, settings) -> dict:
    """A campaign's row: its held call's customer, else its next target's (or none)."""
    target_id = None
    customer_id = held.customer_id if held else None
    if held is None:
        target_id = store.next_preview_target(session, campaign.id, now, settings.timezone)
        target = session.get(CampaignTarget, target_id) if target_id else None
        customer_id = target.customer_id if target else None
    return {
        "campaign": campaign,
        "target_id": target_id,
        "held": held,
        "customer_id": customer_id,
    }


@router.post("/me/campaigns/{campaign_id}/targets/{target_id}/dial")
async def preview_dial(
    request: Request, runtime: RuntimeDep, user: AgentUser, campaign_id: RowId, target_id: RowId
) -> Response:
    if not user.extensions:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=NO_EXTENSION)
    rt = runtime
    ticket = await run_in_threadpool(
        _claim_preview, rt.sessions, campaign_id, target_id, rt.settings.timezone, user.username
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


def _claim_preview(sessions, campaign_id: int, target_id: int, center_tz: str, username: str):
    """The attempt of a preview campaign's target, placed by ``username``, if it may be
    dialled now and the agent has no call of theirs still unsettled."""
    with sessions() as session:
        if store.held_preview_attempts(session, username):
            return None
        campaign = session.get(Campaign, campaign_id)
        target = session.get(CampaignTarget, target_id)
        if campaign is None or campaign.mode != "preview" or target is None:
            return None
        if target.campaign_id != campaign_id:
            return None
    return store.claim_attempt(sessions, target_id, datetime.now(UTC), center_tz, username)


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
