"""What a campaign came to (its progress and its result rows, for the page and the export), and
the lists that keep customers from every campaign: the do-not-call numbers and the opt-outs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_bridge.campaigns.store.status import CampaignError, insert_of
from crm_bridge.db.models import (
    Campaign,
    CampaignTarget,
    Customer,
    CustomerOptOut,
    DialAttempt,
    DoNotCall,
)
from telephony.dialer import MESSAGE_LEFT

OUTCOMES_SHOWN = (
    "answered", "machine", "busy", "no_answer", "congestion", "failed", "lost", "unknown"
)  # fmt: skip


@dataclass
class Progress:
    status: str
    targets: int
    by_state: dict[str, int]
    by_outcome: dict[str, int]
    messages_left: int = 0
    """Of the ``machine`` outcomes, those whose greeting played after the machine's beep."""

    @property
    def finished(self) -> int:
        return sum(self.by_state.get(s, 0) for s in ("done", "failed", "skipped"))


def progress(session: Session, campaign_id: int) -> Progress:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise CampaignError("没有这个活动 / No such campaign")
    states = dict(
        session.execute(
            select(CampaignTarget.state, func.count())
            .where(CampaignTarget.campaign_id == campaign_id)
            .group_by(CampaignTarget.state)
        ).all()
    )
    outcomes = dict(
        session.execute(
            select(DialAttempt.outcome, func.count())
            .where(DialAttempt.campaign_id == campaign_id, DialAttempt.outcome.is_not(None))
            .group_by(DialAttempt.outcome)
        ).all()
    )
    messages_left = session.scalar(
        select(func.count()).where(
            DialAttempt.campaign_id == campaign_id,
            DialAttempt.outcome == "machine",
            DialAttempt.reason_code == MESSAGE_LEFT,
        )
    )
    return Progress(
        status=campaign.status,
        targets=sum(states.values()),
        by_state={str(k): int(v) for k, v in states.items()},
        by_outcome={o: int(outcomes.get(o, 0)) for o in OUTCOMES_SHOWN},
        messages_left=int(messages_left or 0),
    )


RESULT_HEADERS = (
    "卡号 Card no.",
    "姓名 Name",
    "状态 State",
    "尝试次数 Attempts",
    "最后结果 Last outcome",
    "原因 Reason",
    "更新时间 Updated (UTC)",
)


def result_rows(session: Session, campaign_id: int) -> list[tuple]:
    """One row per target, for the export (no phone numbers: the card no. finds them)."""
    rows = session.execute(
        select(
            Customer.card_no,
            Customer.name,
            CampaignTarget.state,
            CampaignTarget.attempts,
            CampaignTarget.last_outcome,
            CampaignTarget.skip_reason,
            CampaignTarget.updated_at,
        )
        .join(Customer, Customer.id == CampaignTarget.customer_id)
        .where(CampaignTarget.campaign_id == campaign_id)
        .order_by(CampaignTarget.id)
    ).all()
    return [
        (*row[:6], row[6].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if row[6] else "")
        for row in rows
    ]


def add_do_not_call(session: Session, e164: str, note: str | None, by: str) -> None:
    insert = insert_of(session, DoNotCall).values(
        number_e164=e164, note=note, added_by=by, added_at=datetime.now(UTC)
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["number_e164"]))


def opt_out(session: Session, customer_id: int, source: str, note: str | None, by: str) -> None:
    """Record that the customer does not want campaign calls (once; later ones change nothing)."""
    if session.get(Customer, customer_id) is None:
        raise CampaignError("客户不存在 / No such customer")
    insert = insert_of(session, CustomerOptOut).values(
        customer_id=customer_id,
        source=source,
        note=note,
        recorded_by=by,
        recorded_at=datetime.now(UTC),
    )
    session.execute(insert.on_conflict_do_nothing(index_elements=["customer_id"]))
