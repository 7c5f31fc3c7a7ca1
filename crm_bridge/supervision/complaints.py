"""What supervisors do with complaints: assign, escalate, resolve, each step kept in
``complaint_events`` (who, when, from which status to which).

Resolving can schedule the follow-up call: the customer becomes a target of a complaint
follow-up campaign (crm_bridge/campaigns/store/'s ``add_follow_up_target``), not to be called
before the chosen time (the target's ``next_attempt_at``); the time is also kept on the resolve
event. Without a campaign chosen the time is only kept, and a running ``complaint_followup``
campaign picks the customer by the day the complaint was resolved.

The functions write inside the caller's transaction and raise
:class:`~crm_bridge.accounts.users.UserInputError` (zh-CN + English per field) before any write.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_bridge.accounts.users import UserInputError
from crm_bridge.campaigns.store import add_follow_up_target
from crm_bridge.db.models import (
    Campaign,
    Complaint,
    ComplaintEvent,
    Customer,
    VisitRecord,
)

MAX_NAME = 64
MAX_TEXT = 2000
OPEN_STATUSES = ("open", "in_progress")
STATUS_LABELS = {
    "open": "待处理 Open",
    "in_progress": "处理中 In progress",
    "resolved": "已解决 Resolved",
    "closed": "已关闭 Closed",
}
ACTION_LABELS = {
    "assign": "分派 Assigned",
    "escalate": "升级 Escalated",
    "resolve": "解决 Resolved",
}


def _complaint(session: Session, complaint_id: int) -> Complaint:
    complaint = session.get(Complaint, complaint_id, with_for_update=True)
    if complaint is None:
        raise UserInputError({"complaint": "没有该投诉 / No such complaint"})
    if complaint.status not in OPEN_STATUSES:
        raise UserInputError({"complaint": "投诉已解决 / The complaint is already resolved"})
    return complaint


def _name(value: str, field: str) -> str:
    value = (value or "").strip()
    if not value or len(value) > MAX_NAME:
        message = f"请填写处理人（最多 {MAX_NAME} 字）/ Name someone (at most {MAX_NAME})"
        raise UserInputError({field: message})
    return value


def _text(value: str | None, field: str, required: bool = False) -> str | None:
    value = (value or "").strip()
    if required and not value:
        raise UserInputError({field: "请填写 / Required"})
    if len(value) > MAX_TEXT:
        raise UserInputError({field: f"最多 {MAX_TEXT} 字 / At most {MAX_TEXT} characters"})
    return value or None


def _event(session: Session, complaint: Complaint, actor: str, action: str, before: str,
           **values: object) -> ComplaintEvent:  # fmt: skip
    event = ComplaintEvent(
        complaint_id=complaint.id,
        actor=actor,
        action=action,
        from_status=before,
        to_status=complaint.status,
        **values,
    )
    session.add(event)
    session.flush()
    return event


def assign(session: Session, complaint_id: int, *, actor: str, handler: str) -> ComplaintEvent:
    complaint = _complaint(session, complaint_id)
    handler = _name(handler, "handler")
    before = complaint.status
    complaint.handler, complaint.status = handler, "in_progress"
    return _event(session, complaint, actor, "assign", before, target=handler)


def escalate(
    session: Session, complaint_id: int, *, actor: str, to: str, comment: str | None = None
) -> ComplaintEvent:
    complaint = _complaint(session, complaint_id)
    to = _name(to, "escalated_to")
    comment = _text(comment, "comment")
    before = complaint.status
    complaint.escalated_to, complaint.status = to, "in_progress"
    return _event(session, complaint, actor, "escalate", before, target=to, comment=comment)


def resolve(
    session: Session,
    complaint_id: int,
    *,
    actor: str,
    resolution: str,
    follow_up_at: datetime | None = None,
    follow_up_campaign_id: int | None = None,
    now: datetime | None = None,
) -> ComplaintEvent:
    complaint = _complaint(session, complaint_id)
    text = _text(resolution, "resolution", required=True)
    now = now or datetime.now(UTC)
    if follow_up_at is not None and follow_up_at <= now:
        raise UserInputError({"follow_up_at": "回访时间须在将来 / The follow-up must be later"})
    campaign = None
    if follow_up_campaign_id is not None:
        campaign = _follow_up_campaign(session, follow_up_campaign_id)
        if follow_up_at is None:
            raise UserInputError({"follow_up_at": "请填写回访时间 / Choose when to call back"})
    before = complaint.status
    complaint.status, complaint.resolution, complaint.resolved_at = "resolved", text, now
    if campaign is not None:
        add_follow_up_target(session, campaign.id, complaint.customer_id, follow_up_at)
    return _event(
        session, complaint, actor, "resolve", before, comment=text, follow_up_at=follow_up_at,
        target=campaign.name[:MAX_NAME] if campaign is not None else None,
    )  # fmt: skip


FOLLOW_UP_STATUSES = ("draft", "running", "paused")


def follow_up_campaigns(session: Session) -> list[Campaign]:
    """The complaint follow-up campaigns a resolved complaint can be handed to."""
    statement = (
        select(Campaign)
        .where(Campaign.kind == "complaint_followup", Campaign.status.in_(FOLLOW_UP_STATUSES))
        .order_by(Campaign.id.desc())
    )
    return list(session.scalars(statement))


def _follow_up_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if (
        campaign is None
        or campaign.kind != "complaint_followup"
        or campaign.status not in FOLLOW_UP_STATUSES
    ):
        message = "请选择进行中的投诉回访活动 / Choose an open complaint follow-up campaign"
        raise UserInputError({"follow_up_campaign": message})
    return campaign


def history(session: Session, complaint_id: int) -> list[ComplaintEvent]:
    statement = (
        select(ComplaintEvent)
        .where(ComplaintEvent.complaint_id == complaint_id)
        .order_by(ComplaintEvent.at, ComplaintEvent.id)
    )
    return list(session.scalars(statement))


@dataclass(frozen=True)
class ComplaintRow:
    complaint: Complaint
    customer_name: str
    card_no: str


def list_complaints(
    session: Session, statuses: tuple[str, ...], *, limit: int, offset: int
) -> tuple[list[ComplaintRow], int]:
    """Complaints in ``statuses``, oldest first (the longest waiting at the top), and the count."""
    where = Complaint.status.in_(statuses)
    total = session.scalar(select(func.count(Complaint.id)).where(where)) or 0
    rows = session.execute(
        select(Complaint, Customer.name, Customer.card_no)
        .join(Customer, Customer.id == Complaint.customer_id)
        .where(where)
        .order_by(Complaint.received_at, Complaint.id)
        .limit(limit)
        .offset(offset)
    )
    return [ComplaintRow(c, name, card) for c, name, card in rows], int(total)


@dataclass(frozen=True)
class VisitRow:
    visit: VisitRecord
    customer_name: str
    card_no: str


def list_visits(
    session: Session,
    *,
    since: datetime | None,
    until: datetime | None,
    with_opinions: bool,
    limit: int,
    offset: int,
) -> tuple[list[VisitRow], int]:
    """Visit records, newest first; ``with_opinions``: only those with an opinion or suggestion."""
    query = select(VisitRecord, Customer.name, Customer.card_no).join(
        Customer, Customer.id == VisitRecord.customer_id
    )
    counted = select(func.count(VisitRecord.id))
    conditions = []
    if since is not None:
        conditions.append(VisitRecord.visited_at >= since)
    if until is not None:
        conditions.append(VisitRecord.visited_at < until)
    if with_opinions:
        conditions.append(
            (func.coalesce(VisitRecord.opinions, "") != "")
            | (func.coalesce(VisitRecord.suggestions, "") != "")
        )
    query, counted = query.where(*conditions), counted.where(*conditions)
    rows = session.execute(
        query.order_by(VisitRecord.visited_at.desc(), VisitRecord.id.desc())
        .limit(limit)
        .offset(offset)
    )
    total = session.scalar(counted) or 0
    return [VisitRow(v, name, card) for v, name, card in rows], int(total)
