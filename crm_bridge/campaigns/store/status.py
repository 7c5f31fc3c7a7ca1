"""A campaign's status and its targets, in the database.

All campaign state lives in the database (this package), so a restarted service carries on
where it stopped:

- :func:`start_campaign` builds the targets from the rules (once) and sets the status;
  :func:`set_status` pauses, resumes and stops. A message campaign without a greeting never
  runs (:data:`NO_GREETING`).
- dialling the targets is :mod:`crm_bridge.campaigns.store.attempts`, what a campaign came to
  and the do-not-call and opt-out lists :mod:`crm_bridge.campaigns.store.results`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_bridge.campaigns.audience import Audience, is_marketing, select_campaign_audience
from crm_bridge.campaigns.dial_decision import (
    CallingPolicy,
    PolicyIn,
)
from crm_bridge.campaigns.rules import parse_rules
from crm_bridge.db.models import (
    Campaign,
    CampaignTarget,
)
from telephony.dialer import GREETING_NOT_PLAYED

log = logging.getLogger(__name__)

UNSAFE_REASON = "unsafe"
"""The ``reason_code`` of an attempt whose Originate was not sent: a value of it (from the
campaign) could be misread by Asterisk."""
DISPOSITION_OUTCOME = {
    "answered": "answered",
    "busy": "busy",
    "no_answer": "no_answer",
    "failed": "failed",
    "abandoned": "answered",
}
"""A logged call's disposition as a dial outcome (an outbound call answered by the customer
and then left in the queue shows as abandoned: the customer did answer)."""
FINAL_REASONS = (UNSAFE_REASON, GREETING_NOT_PLAYED)
"""Reasons after which the same campaign calling again would fail the same way: an Originate
unsafe to send, a greeting Asterisk cannot play (the customer heard silence)."""


class CampaignError(ValueError):
    """A campaign change that cannot be made now (zh-CN / English)."""


NO_GREETING = (
    "播放录音的活动需要先上传问候录音 / A message campaign needs a greeting recording: "
    "upload one before starting"
)


def _refuse_unless_runnable(campaign: Campaign) -> None:
    """A message campaign plays its greeting: without one, its calls would be answered in
    silence and counted as answered."""
    if campaign.mode == "message" and not campaign.greeting_file:
        raise CampaignError(NO_GREETING)


class LostRace(Exception):
    """Another tick moved the target first: roll back, dial nothing."""


def campaign_policy(campaign: Campaign, center_timezone: str) -> CallingPolicy:
    policy = PolicyIn.model_validate(campaign.policy or {})
    return policy.policy(center_timezone, is_marketing(campaign.kind))


# --------------------------------------------------------------------------- status


AudienceOf = Callable[[list[dict], date, str], Audience]
"""The audience of a campaign's rules and kind on a day (the service's
:class:`AudienceProcess`)."""


def start_campaign(
    session: Session,
    campaign_id: int,
    now_utc: datetime,
    zone: ZoneInfo,
    region: str,
    audience_of: AudienceOf | None = None,
) -> int:
    """Start a draft (building its targets from the rules, today's in the center's zone, less
    the customers the selection leaves out: minors of a marketing campaign) or resume a paused
    campaign. Returns how many targets it has. The audience is selected by ``audience_of``,
    else in ``session``."""
    campaign = locked_campaign(session, campaign_id)
    _refuse_unless_runnable(campaign)
    if campaign.status == "draft":
        today = now_utc.astimezone(zone).date()
        if audience_of is not None:
            audience = audience_of(campaign.rules, today, campaign.kind)
        else:
            audience = select_campaign_audience(
                session, parse_rules(campaign.rules), today, zone, region,
                is_marketing(campaign.kind),
            )  # fmt: skip
        add_targets(session, campaign_id, audience.ids)
        campaign.started_at = now_utc
    elif campaign.status != "paused":
        raise cannot("start", campaign.status)
    campaign.status = "running"
    session.flush()
    return count_of(
        session,
        select(func.count(CampaignTarget.id)).where(CampaignTarget.campaign_id == campaign_id),
    )


STATUS_IN_CHINESE = {"draft": "草稿", "running": "进行中", "paused": "已暂停", "stopped": "已停止",
                     "done": "已完成"}  # fmt: skip
ACTION_IN_CHINESE = {"start": "开始", "pause": "暂停", "resume": "继续", "stop": "停止"}


def cannot(action: str, status: str) -> CampaignError:
    """Refused: ``action`` on a campaign that is ``status``, said in both languages."""
    return CampaignError(
        f"{STATUS_IN_CHINESE.get(status, status)}的活动不能{ACTION_IN_CHINESE[action]} / "
        f"Cannot {action} a {status} campaign"
    )


TRANSITIONS = {
    "pause": ({"running"}, "paused"),
    "resume": ({"paused"}, "running"),
    "stop": ({"running", "paused"}, "stopped"),
}


def set_status(session: Session, campaign_id: int, action: str, now_utc: datetime) -> str:
    """Pause, resume or stop; the runner sees it on its next look (well within a second)."""
    allowed, new = TRANSITIONS[action]
    campaign = locked_campaign(session, campaign_id)
    if campaign.status not in allowed:
        raise cannot(action, campaign.status)
    if new == "running":
        _refuse_unless_runnable(campaign)
    campaign.status = new
    if new == "stopped":
        campaign.finished_at = now_utc
    session.flush()
    return new


def lock_first(session: Session, table, row_id: int) -> int:
    """Take the row's write lock before reading anything (a no-op UPDATE): on SQLite this
    takes the database's write lock up front, so the transaction waits its turn (busy
    timeout) instead of failing when it later writes over a stale read; on PostgreSQL it
    locks the row. Returns how many rows matched (0: no such row)."""
    return session.execute(update(table).where(table.id == row_id).values(id=table.id)).rowcount


def locked_campaign(session: Session, campaign_id: int) -> Campaign:
    lock_first(session, Campaign, campaign_id)
    campaign = session.get(Campaign, campaign_id, populate_existing=True)
    if campaign is None:
        raise CampaignError("没有这个活动 / No such campaign")
    return campaign


def add_follow_up_target(
    session: Session, campaign_id: int, customer_id: int, not_before: datetime
) -> None:
    """Make the customer a target of the campaign, not to be called before ``not_before``
    (a follow-up of a resolved complaint); a target already pending gets the new time."""
    add_targets(session, campaign_id, [customer_id])
    session.execute(
        update(CampaignTarget)
        .where(
            CampaignTarget.campaign_id == campaign_id,
            CampaignTarget.customer_id == customer_id,
            CampaignTarget.state == "pending",
        )
        .values(next_attempt_at=not_before)
    )


def add_targets(session: Session, campaign_id: int, customer_ids: Iterable[int]) -> None:
    """Insert the targets, once each (a second start adds nobody twice)."""
    rows = [
        {
            "campaign_id": campaign_id,
            "customer_id": cid,
            "state": "pending",
            "attempts": 0,
            "updated_at": datetime.now(UTC),
        }
        for cid in customer_ids
    ]
    for at in range(0, len(rows), 1000):
        insert = insert_of(session, CampaignTarget).values(rows[at : at + 1000])
        session.execute(
            insert.on_conflict_do_nothing(index_elements=["campaign_id", "customer_id"])
        )


def insert_of(session: Session, table):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def count_of(session: Session, query) -> int:
    return int(session.scalar(query) or 0)


# --------------------------------------------------------------------------- progress, results
