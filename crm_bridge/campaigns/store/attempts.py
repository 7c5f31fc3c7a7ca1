"""Dialling a campaign's targets: :func:`claim_attempt` is the one way to a dial: in one
transaction it re-reads the customer, re-runs
:func:`~crm_bridge.campaigns.dial_decision.dial_decision`, claims the customer's local day
(unique per customer and day, across campaigns) and inserts the attempt under its unique key
(campaign, customer, attempt no.), then commits, before any Originate is sent. Two ticks,
two instances or a restart racing for the same target: one gets the attempt, the others get
nothing.

:func:`record_outcome` settles an attempt once; :func:`reconcile_unresolved` settles attempts
a previous run left without outcome, from the call log (their ChannelId is the Linkedid; a call
that ended while the service was down gets there from Asterisk's CDRs,
:mod:`crm_bridge.calls.cdr_reconcile`), or as ``lost`` once the grace period is over.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.campaigns.dial_decision import (
    PERMANENT_REASONS,
    CallingPolicy,
    dial_decision,
    load_facts,
    retry_after,
)
from crm_bridge.campaigns.store.status import (
    DISPOSITION_OUTCOME,
    FINAL_REASONS,
    LostRace,
    campaign_policy,
    count_of,
    insert_of,
    lock_first,
)
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignDayClaim,
    CampaignTarget,
    DialAttempt,
)
from telephony.dialer import MESSAGE_LEFT

log = logging.getLogger(__name__)

RECHECK_AFTER = timedelta(minutes=5)
"""When a target outside calling hours (or days) is looked at again."""


UNRESOLVED_GRACE = timedelta(minutes=3)
"""How long an attempt without outcome waits for its call to reach the call log."""


@dataclass(frozen=True)
class Ticket:
    """An attempt committed to the database: now, and only now, it may be dialled."""

    attempt_id: int
    campaign_id: int
    customer_id: int
    attempt_no: int
    number_e164: str
    action_id: str
    channel_id: str


def due_target_ids(session: Session, campaign_id: int, now_utc: datetime, limit: int) -> list[int]:
    """The campaign's pending targets due for a look now, oldest first."""
    query = (
        select(CampaignTarget.id)
        .where(
            CampaignTarget.campaign_id == campaign_id,
            CampaignTarget.state == "pending",
            or_(
                CampaignTarget.next_attempt_at.is_(None), CampaignTarget.next_attempt_at <= now_utc
            ),
        )
        .order_by(
            CampaignTarget.next_attempt_at.is_not(None),
            CampaignTarget.next_attempt_at,
            CampaignTarget.id,
        )
        .limit(limit)
    )
    return list(session.scalars(query))


def claim_attempt(
    sessions: sessionmaker[Session],
    target_id: int,
    now_utc: datetime,
    center_timezone: str,
    placed_by: str | None = None,
) -> Ticket | None:
    """Check the target again and, if it may be dialled now, commit its next attempt
    (``placed_by``: the agent placing a preview call).

    None when the target is not to be dialled now (its next look is scheduled, or it is
    skipped for good) or another tick got there first.
    """
    try:
        with sessions.begin() as session:
            return _claim(session, target_id, now_utc, center_timezone, placed_by)
    except (IntegrityError, OperationalError, LostRace) as exc:
        log.info("target %s taken by another tick (%s)", target_id, type(exc).__name__)
        return None


def _claim(
    session: Session, target_id: int, now: datetime, center_tz: str, placed_by: str | None
) -> Ticket | None:
    lock_first(session, CampaignTarget, target_id)
    target = session.get(CampaignTarget, target_id)
    if target is None or target.state != "pending":
        return None
    campaign = session.get(Campaign, target.campaign_id)
    if campaign is None or campaign.status != "running":
        return None
    policy = campaign_policy(campaign, center_tz)
    facts = load_facts(session, [target.customer_id], now, campaign.id)[target.customer_id]
    decision = dial_decision(facts, now, policy, campaign.id)
    if not decision.ok:
        _postpone(target, decision.reason or "", facts, policy, now)
        return None
    assert decision.local_day is not None and decision.number is not None
    if not _claim_day(session, target.customer_id, decision.local_day, campaign.id, now):
        _postpone(target, "called_today", facts, policy, now)
        return None
    attempt_no = target.attempts + 1
    moved = session.execute(
        update(CampaignTarget)
        .where(
            CampaignTarget.id == target.id,
            CampaignTarget.state == "pending",
            CampaignTarget.attempts == target.attempts,
        )
        .values(state="dialing", attempts=attempt_no, updated_at=now)
    )
    if moved.rowcount != 1:
        raise LostRace
    channel_id = str(uuid.uuid4())
    attempt = DialAttempt(
        campaign_id=campaign.id,
        customer_id=target.customer_id,
        attempt_no=attempt_no,
        number_e164=decision.number,
        action_id=f"cmp-{campaign.id}-{target.customer_id}-{attempt_no}",
        channel_id=channel_id,
        created_at=now,
        placed_by=placed_by,
    )
    session.add(attempt)
    session.flush()
    return Ticket(
        attempt.id,
        campaign.id,
        target.customer_id,
        attempt_no,
        decision.number,
        attempt.action_id,
        channel_id,
    )


def _claim_day(session: Session, customer_id: int, day: date, campaign_id: int, now) -> bool:
    """Hold the customer's local day for this campaign; False if another holds it."""
    row = {
        "customer_id": customer_id,
        "local_day": day,
        "campaign_id": campaign_id,
        "claimed_at": now,
    }
    insert = insert_of(session, CampaignDayClaim).values(row)
    session.execute(insert.on_conflict_do_nothing(index_elements=["customer_id", "local_day"]))
    holder = session.scalar(
        select(CampaignDayClaim.campaign_id).where(
            CampaignDayClaim.customer_id == customer_id, CampaignDayClaim.local_day == day
        )
    )
    return holder == campaign_id


def _postpone(target: CampaignTarget, reason: str, facts, policy: CallingPolicy, now) -> None:
    """A target that may not be dialled now: skipped for good, or looked at again later."""
    if reason in PERMANENT_REASONS:
        target.state = "failed" if reason == "attempts_exhausted" else "skipped"
        target.skip_reason = reason
        return
    target.skip_reason = reason
    if reason == "retry_wait":
        target.next_attempt_at = retry_after(facts, policy)
    elif reason == "called_today":
        zone = ZoneInfo(facts.timezone or policy.center_timezone)
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        target.next_attempt_at = datetime.combine(tomorrow, time(0), zone).astimezone(UTC)
    else:
        target.next_attempt_at = now + RECHECK_AFTER


def withdraw_attempt(sessions: sessionmaker[Session], attempt_id: int) -> None:
    """Take back an attempt whose Originate was never sent (the campaign was paused or
    stopped while it waited for the pace): the target is pending again, as before."""
    with sessions.begin() as session:
        lock_first(session, DialAttempt, attempt_id)
        attempt = session.get(DialAttempt, attempt_id)
        if attempt is None or attempt.outcome is not None:
            return
        session.execute(
            update(CampaignTarget)
            .where(
                CampaignTarget.campaign_id == attempt.campaign_id,
                CampaignTarget.customer_id == attempt.customer_id,
                CampaignTarget.attempts == attempt.attempt_no,
            )
            .values(state="pending", attempts=attempt.attempt_no - 1)
        )
        session.delete(attempt)


def record_outcome(
    sessions: sessionmaker[Session],
    attempt_id: int,
    outcome: str,
    now_utc: datetime,
    center_timezone: str,
    reason_code: str | None = None,
) -> bool:
    """Settle an attempt (once: a second report changes nothing) and move its target on:
    answered, or a message left on an answering machine -> done; else retried after the
    outcome's delay (a machine hung up on too), or failed when the attempts are used up, or at
    once when trying again cannot help (an ``unknown`` outcome, or an Originate refused as
    unsafe to send, which the same campaign would make again, or a greeting that did not
    play). True when this call settled it."""
    with sessions.begin() as session:
        settled = session.execute(
            update(DialAttempt)
            .where(DialAttempt.id == attempt_id, DialAttempt.outcome.is_(None))
            .values(outcome=outcome, reason_code=reason_code, finished_at=now_utc)
        )
        if settled.rowcount != 1:
            return False
        attempt = session.get(DialAttempt, attempt_id)
        assert attempt is not None
        target = session.scalars(
            select(CampaignTarget).where(
                CampaignTarget.campaign_id == attempt.campaign_id,
                CampaignTarget.customer_id == attempt.customer_id,
            )
        ).one()
        campaign = session.get(Campaign, attempt.campaign_id)
        assert campaign is not None
        policy = campaign_policy(campaign, center_timezone)
        target.last_outcome = outcome
        if outcome == "answered" or (outcome, reason_code) == ("machine", MESSAGE_LEFT):
            target.state = "done"
        elif (
            outcome == "unknown"
            or reason_code in FINAL_REASONS
            or _counted_attempts(session, attempt) >= policy.max_attempts
        ):
            target.state = "failed"
        else:
            target.state = "pending"
            minutes = policy.retry_minutes.get(outcome, 0)
            target.next_attempt_at = now_utc + timedelta(minutes=minutes)
        return True


def _counted_attempts(session: Session, attempt: DialAttempt) -> int:
    """The attempts that count against the cap: all but the ``lost`` ones (never placed)."""
    return count_of(
        session,
        select(func.count(DialAttempt.id)).where(
            DialAttempt.campaign_id == attempt.campaign_id,
            DialAttempt.customer_id == attempt.customer_id,
            or_(DialAttempt.outcome.is_(None), DialAttempt.outcome != "lost"),
        ),
    )


def unresolved_attempts(session: Session) -> list[DialAttempt]:
    """Attempts without an outcome yet, oldest first."""
    query = select(DialAttempt).where(DialAttempt.outcome.is_(None)).order_by(DialAttempt.id)
    return list(session.scalars(query))


def reconcile_unresolved(
    sessions: sessionmaker[Session],
    now_utc: datetime,
    center_timezone: str,
    in_flight: set[int],
    grace: timedelta = UNRESOLVED_GRACE,
    calls_in_progress: frozenset[str] = frozenset(),
) -> int:
    """Settle attempts without outcome that no dialer follows (not those in ``in_flight``, nor
    those whose call is still in progress by its Linkedid): a previous run's, and the agents'
    preview calls. From the call log when the call is there, else as ``lost`` once ``grace``
    has passed since the attempt was made. Returns how many settled."""
    with sessions() as session:
        waiting = [
            a
            for a in unresolved_attempts(session)
            if a.id not in in_flight and a.channel_id not in calls_in_progress
        ]
        logged = _logged_outcomes(session, [a.channel_id for a in waiting])
    settled = 0
    for attempt in waiting:
        outcome = logged.get(attempt.channel_id)
        if outcome is None and now_utc - attempt.created_at < grace:
            continue
        if record_outcome(sessions, attempt.id, outcome or "lost", now_utc, center_timezone):
            settled += 1
            log.info("attempt %s settled after a restart: %s", attempt.action_id, outcome or "lost")
    return settled


def _logged_outcomes(session: Session, channel_ids: list[str]) -> dict[str, str]:
    if not channel_ids:
        return {}
    rows = session.execute(
        select(Call.linkedid, Call.disposition).where(Call.linkedid.in_(channel_ids))
    )
    return {lid: DISPOSITION_OUTCOME.get(disp or "", "failed") for lid, disp in rows}


def finish_if_done(session: Session, campaign_id: int, now_utc: datetime) -> bool:
    """A running campaign with no target left to dial or follow is done. Read first, so
    that a busy campaign costs no write (no SQLite write lock) per look."""
    open_targets = select(CampaignTarget.id).where(
        CampaignTarget.campaign_id == campaign_id,
        CampaignTarget.state.in_(("pending", "dialing")),
    )
    if session.scalar(open_targets.exists().select()):
        return False
    moved = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "running", ~open_targets.exists())
        .values(status="done", finished_at=now_utc)
    )
    return moved.rowcount == 1


def campaign_for_attempt(session: Session, linkedid: str) -> tuple[int, int] | None:
    """(campaign id, customer id) of the campaign call with this Linkedid (its ChannelId)."""
    row = session.execute(
        select(DialAttempt.campaign_id, DialAttempt.customer_id).where(
            DialAttempt.channel_id == linkedid
        )
    ).first()
    return (row[0], row[1]) if row else None


def next_preview_target(
    session: Session, campaign_id: int, now_utc: datetime, center_timezone: str, look: int = 20
) -> int | None:
    """The first due target of a preview campaign that may be dialled now (nothing claimed:
    the agent sees the customer first; :func:`claim_attempt` checks again on the click)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status != "running" or campaign.mode != "preview":
        return None
    ids = due_target_ids(session, campaign_id, now_utc, look)
    if not ids:
        return None
    customers = dict(
        session.execute(
            select(CampaignTarget.id, CampaignTarget.customer_id).where(CampaignTarget.id.in_(ids))
        ).all()
    )
    policy = campaign_policy(campaign, center_timezone)
    facts = load_facts(session, list(customers.values()), now_utc, campaign_id)
    for target_id in ids:
        if dial_decision(facts[customers[target_id]], now_utc, policy, campaign_id).ok:
            return target_id
    return None


def held_preview_attempts(session: Session, username: str) -> list[DialAttempt]:
    """The preview calls ``username`` placed that are not settled yet, oldest first: the
    agent's page stays on their customers (and dials nobody else) until they are."""
    query = (
        select(DialAttempt)
        .where(DialAttempt.placed_by == username, DialAttempt.outcome.is_(None))
        .order_by(DialAttempt.id)
    )
    return list(session.scalars(query))
