"""What supervisors do with complaints: assign, escalate, resolve, each step kept in
``complaint_events`` (who, when, from which status to which).

A complaint is assigned to an active agent or supervisor and escalated to an active supervisor
or administrator, picked from the list of users (:func:`assignees`, :func:`escalation_users`);
the complaint keeps the current assignee and escalation with who did it and when. Its category
and severity are chosen when it is taken (:mod:`crm_bridge.pops.work`).

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
    User,
    VisitRecord,
)

MAX_NAME = 64
ASSIGNEE_ROLES = ("agent", "supervisor")
"""Who a complaint can be assigned to: the people who call the customer back."""
ESCALATION_ROLES = ("supervisor", "admin")
"""Who a complaint can be escalated to: the people above the handler."""
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


def _complaint(session: Session, complaint_id: int, field: str) -> Complaint:
    """The complaint, locked, while it is still open; ``field``: where a refusal is shown."""
    complaint = session.get(Complaint, complaint_id, with_for_update=True)
    if complaint is None:
        raise UserInputError({field: "没有该投诉 / No such complaint"})
    if complaint.status not in OPEN_STATUSES:
        message = "投诉已解决或已关闭，不能再处理 / The complaint is resolved or closed"
        raise UserInputError({field: message})
    return complaint


def _users(session: Session, roles: tuple[str, ...]) -> list[User]:
    statement = (
        select(User).where(User.active.is_(True), User.role.in_(roles)).order_by(User.username)
    )
    return list(session.scalars(statement))


def assignees(session: Session) -> list[User]:
    """The users a complaint can be assigned to, by name."""
    return _users(session, ASSIGNEE_ROLES)


def escalation_users(session: Session) -> list[User]:
    """The users a complaint can be escalated to, by name."""
    return _users(session, ESCALATION_ROLES)


ASSIGN_REFUSED = "只能分派给在职的坐席或主管 / Assign to an active agent or supervisor"
ESCALATE_REFUSED = "只能升级给在职的主管或管理员 / Escalate to an active supervisor or admin"


def _picked(
    session: Session, username: str, roles: tuple[str, ...], field: str, refusal: str
) -> str:
    """The user name picked from the list, if it is an active user of one of ``roles``."""
    username = (username or "").strip()[:MAX_NAME]
    if not username:
        raise UserInputError({field: "请从列表中选择一位用户 / Pick a user from the list"})
    user = session.scalar(select(User).where(User.username == username))
    if user is None or not user.active or user.role not in roles:
        raise UserInputError({field: f"“{username}”：{refusal}"})
    return user.username


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


def assign(
    session: Session, complaint_id: int, *, actor: str, handler: str, now: datetime | None = None
) -> ComplaintEvent:
    """Assign the complaint to ``handler``, an active agent or supervisor."""
    complaint = _complaint(session, complaint_id, "handler")
    handler = _picked(session, handler, ASSIGNEE_ROLES, "handler", ASSIGN_REFUSED)
    before, now = complaint.status, now or datetime.now(UTC)
    complaint.handler, complaint.status = handler, "in_progress"
    complaint.assigned_by, complaint.assigned_at = actor, now
    return _event(session, complaint, actor, "assign", before, target=handler, at=now)


def escalate(
    session: Session,
    complaint_id: int,
    *,
    actor: str,
    to: str,
    comment: str | None = None,
    now: datetime | None = None,
) -> ComplaintEvent:
    """Escalate the complaint to ``to``, an active supervisor or administrator."""
    complaint = _complaint(session, complaint_id, "escalated_to")
    to = _picked(session, to, ESCALATION_ROLES, "escalated_to", ESCALATE_REFUSED)
    comment = _text(comment, "comment")
    before, now = complaint.status, now or datetime.now(UTC)
    complaint.escalated_to, complaint.status = to, "in_progress"
    complaint.escalated_by, complaint.escalated_at = actor, now
    return _event(
        session, complaint, actor, "escalate", before, target=to, comment=comment, at=now
    )


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
    complaint = _complaint(session, complaint_id, "resolution")
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
    session: Session,
    statuses: tuple[str, ...],
    *,
    category: str | None = None,
    severity: str | None = None,
    limit: int,
    offset: int,
) -> tuple[list[ComplaintRow], int]:
    """Complaints in ``statuses`` (and of that category and severity, when given), oldest
    first (the longest waiting at the top), and the count."""
    where = [Complaint.status.in_(statuses)]
    if category is not None:
        where.append(Complaint.category == category)
    if severity is not None:
        where.append(Complaint.severity == severity)
    total = session.scalar(select(func.count(Complaint.id)).where(*where)) or 0
    rows = session.execute(
        select(Complaint, Customer.name, Customer.card_no)
        .join(Customer, Customer.id == Complaint.customer_id)
        .where(*where)
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
