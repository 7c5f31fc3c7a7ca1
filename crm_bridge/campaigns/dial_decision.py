"""Whether a customer may be dialled now.

The dial decision (:func:`dial_decision`) is a pure function of what is known of one customer
(:class:`DialFacts`), the time and the :class:`CallingPolicy`: a minor's guardian's consent
(marketing campaigns), consent, opt-out and the
do-not-call list, a valid number, one campaign call a day, the attempt cap, the retry delay
after the last outcome, blackout dates, weekdays and calling hours in the customer's own zone.
The runner calls it again at the moment of dialling; :func:`preview` runs it over the
audience (:func:`~crm_bridge.campaigns.rules.select_audience`) to show who is in and who is
left out, and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from crm_bridge.campaigns.audience import ADULT_AGE, CHILD_TAGS, MINOR
from crm_bridge.customers.birthdays import born_by_for_age
from crm_bridge.db.models import (
    CampaignDayClaim,
    Customer,
    CustomerOptOut,
    CustomerPhone,
    DialAttempt,
    DoNotCall,
    GuardianConsent,
)

RETRYABLE_OUTCOMES = ("busy", "no_answer", "congestion", "failed", "machine", "lost")


_IN_CHUNK = 500


REASON_LABELS: dict[str, str] = {
    "minor": "未满18岁或标为儿童，未记录监护人同意（营销活动） / Under 18 or tagged as a child, "
    "no guardian's consent recorded (marketing campaign)",
    "no_consent": "未同意接听营销电话 / No consent",
    "do_not_call": "免打扰名单或已退订 / Do-not-call or opted out",
    "no_valid_number": "没有有效号码 / No valid number",
    "called_today": "今天已被其他活动呼叫 / Already called today by another campaign",
    "attempts_exhausted": "已达最大尝试次数 / Attempts used up",
    "retry_wait": "等待重拨间隔 / Waiting for the retry delay",
    "blackout_date": "禁呼日期 / Blackout date",
    "day_not_allowed": "非呼叫日 / Not a calling day",
    "outside_hours": "不在呼叫时段 / Outside calling hours",
}


PERMANENT_REASONS = frozenset({"minor", "no_consent", "do_not_call", "no_valid_number",
                               "attempts_exhausted"})  # fmt: skip
"""Reasons that will not change by waiting; the others pass with time."""


DEFAULT_RETRY_MINUTES = {
    "busy": 10, "no_answer": 60, "congestion": 5, "failed": 30, "machine": 120, "lost": 5
}  # fmt: skip
RetriedOutcome = Literal["busy", "no_answer", "congestion", "failed", "machine", "lost"]
OnMachine = Literal["hang_up", "message"]
"""What a message call does on an answering machine: hang up (and try again after the
``machine`` retry delay), or leave the greeting after the beep (the target is then done)."""


class PolicyIn(BaseModel):
    """A campaign's calling policy as stored (JSON) and edited on the scheduler's page."""

    model_config = ConfigDict(extra="forbid")

    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    """Monday is 0."""
    blackout_dates: list[date] = Field(default_factory=list)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_minutes: dict[RetriedOutcome, float] = Field(
        default_factory=lambda: dict(DEFAULT_RETRY_MINUTES)
    )
    """Fractions allowed: 0.5 is half a minute."""
    on_machine: OnMachine = "hang_up"
    """See :data:`OnMachine`; only message calls detect machines."""

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, values: list[int]) -> list[int]:
        if not values or any(not 0 <= v <= 6 for v in values):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday), at least one")
        return sorted(set(values))

    @field_validator("retry_minutes")
    @classmethod
    def _retry(cls, values: dict[str, float]) -> dict[str, float]:
        if any(not 0 <= v <= 7 * 24 * 60 for v in values.values()):
            raise ValueError("retry delays are 0 to 10080 minutes")
        return {**DEFAULT_RETRY_MINUTES, **values}

    def policy(self, center_timezone: str, marketing: bool = False) -> CallingPolicy:
        return CallingPolicy(
            start=self.start,
            end=self.end,
            weekdays=frozenset(self.weekdays),
            blackout_dates=frozenset(self.blackout_dates),
            max_attempts=self.max_attempts,
            retry_minutes=dict(self.retry_minutes),
            center_timezone=center_timezone,
            marketing=marketing,
        )


@dataclass(frozen=True)
class CallingPolicy:
    """When a campaign may call. ``start``/``end`` are the customer's local time (end
    excluded; an ``end`` before ``start`` spans midnight; equal ones mean all day)."""

    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: frozenset[int] = frozenset(range(7))
    blackout_dates: frozenset[date] = frozenset()
    max_attempts: int = 3
    retry_minutes: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RETRY_MINUTES))
    center_timezone: str = "Asia/Shanghai"
    marketing: bool = False
    """A marketing campaign's (:data:`~crm_bridge.campaigns.audience.MARKETING_KINDS`): it
    calls no minor without a guardian's consent."""

    def local(self, now_utc: datetime, customer_zone: str | None) -> datetime:
        return now_utc.astimezone(ZoneInfo(customer_zone or self.center_timezone))

    def within_hours(self, moment: time) -> bool:
        """``start == end`` means all day."""
        if self.start == self.end:
            return True
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


@dataclass(frozen=True)
class DialFacts:
    """What the dial decision needs to know of one customer, read fresh from the database."""

    customer_id: int
    consent: bool = True
    opted_out: bool = False
    numbers: tuple[str, ...] = ()
    """The customer's valid E.164 numbers, mobile first."""
    do_not_call: frozenset[str] = frozenset()
    """Those of ``numbers`` on the do-not-call list."""
    timezone: str | None = None
    claims: Mapping[date, int] = field(default_factory=dict)
    """Which campaign holds the customer's day, by local day."""
    attempts: int = 0
    last_outcome: str | None = None
    last_attempt_at: datetime | None = None
    birthday: date | None = None
    tagged_child: bool = False
    guardian_consent: bool = False


@dataclass(frozen=True)
class Decision:
    ok: bool
    reason: str | None = None
    """One of :data:`REASON_LABELS` when not ok."""
    number: str | None = None
    local_day: date | None = None
    """The customer's local day now: the day a dial would claim."""


def dial_decision(
    customer: DialFacts, now_utc: datetime, policy: CallingPolicy, campaign_id: int | None = None
) -> Decision:
    """Whether ``campaign_id`` may dial ``customer`` at ``now_utc``, and which number.

    Checked in this order (the first that fails is the reason): a minor without a guardian's
    consent (marketing campaigns only, as the selection checks it: a consent withdrawn after
    the start counts), consent, opt-out and the do-not-call list, a valid number, the attempt
    cap, another campaign's call today, the retry delay after the last outcome, blackout
    dates, weekdays, calling hours. Dates and hours are the customer's own (their zone, else
    the center's).
    """
    local = policy.local(now_utc, customer.timezone)
    day = local.date()
    callable_numbers = [n for n in customer.numbers if n not in customer.do_not_call]
    holder = customer.claims.get(day)
    wait_until = retry_after(customer, policy)
    checks: list[tuple[bool, str]] = [
        (policy.marketing and _minor_without_consent(customer, day), MINOR),
        (not customer.consent, "no_consent"),
        (customer.opted_out or (customer.numbers and not callable_numbers), "do_not_call"),
        (not customer.numbers, "no_valid_number"),
        (customer.attempts >= policy.max_attempts, "attempts_exhausted"),
        (holder is not None and holder != campaign_id, "called_today"),
        (wait_until is not None and now_utc < wait_until, "retry_wait"),
        (day in policy.blackout_dates, "blackout_date"),
        (day.weekday() not in policy.weekdays, "day_not_allowed"),
        (not policy.within_hours(local.time()), "outside_hours"),
    ]
    for failed, reason in checks:
        if failed:
            return Decision(False, reason, local_day=day)
    return Decision(True, None, callable_numbers[0], day)


def _minor_without_consent(customer: DialFacts, day: date) -> bool:
    """As the selection reads it (:mod:`crm_bridge.campaigns.audience`): born after the latest
    date of birth of an 18-year-old, or tagged as a child; and no guardian's consent."""
    born_by = born_by_for_age(ADULT_AGE, day)
    young = customer.birthday is not None and customer.birthday > born_by
    return (young or customer.tagged_child) and not customer.guardian_consent


def retry_after(customer: DialFacts, policy: CallingPolicy) -> datetime | None:
    """When the customer may be dialled again after their last outcome (None: no wait)."""
    if customer.last_attempt_at is None or customer.last_outcome not in RETRYABLE_OUTCOMES:
        return None
    minutes = policy.retry_minutes.get(customer.last_outcome, 0)
    return customer.last_attempt_at + timedelta(minutes=minutes)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for at in range(0, len(ids), _IN_CHUNK):
        yield ids[at : at + _IN_CHUNK]


def _valid(e164: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return False


def load_facts(
    session: Session, customer_ids: Sequence[int], now_utc: datetime, campaign_id: int | None
) -> dict[int, DialFacts]:
    """Fresh :class:`DialFacts` of the customers, a few queries per 500 of them."""
    facts: dict[int, DialFacts] = {}
    days = [(now_utc + timedelta(days=d)).date() for d in (-1, 0, 1)]
    for chunk in _chunks(list(customer_ids)):
        facts.update(_load_chunk(session, chunk, days, campaign_id))
    return facts


def _load_chunk(
    session: Session, ids: Sequence[int], days: list[date], campaign_id: int | None
) -> dict[int, DialFacts]:
    people = session.execute(
        select(
            Customer.id, Customer.consent_to_calls, Customer.timezone, Customer.birthday,
            Customer.tags,
        ).where(Customer.id.in_(ids))
    ).all()  # fmt: skip
    guarded = set(
        session.scalars(
            select(GuardianConsent.customer_id).where(GuardianConsent.customer_id.in_(ids))
        )
    )
    kind_order = (CustomerPhone.kind != "mobile", CustomerPhone.id)
    numbers: dict[int, list[str]] = {}
    for cid, number in session.execute(
        select(CustomerPhone.customer_id, CustomerPhone.number_e164)
        .where(CustomerPhone.customer_id.in_(ids))
        .order_by(*kind_order)
    ):
        if _valid(number) and number not in numbers.setdefault(cid, []):
            numbers[cid].append(number)
    all_numbers = {n for ns in numbers.values() for n in ns}
    blocked = set(
        session.scalars(select(DoNotCall.number_e164).where(DoNotCall.number_e164.in_(all_numbers)))
    )
    opted = set(
        session.scalars(
            select(CustomerOptOut.customer_id).where(CustomerOptOut.customer_id.in_(ids))
        )
    )
    claims: dict[int, dict[date, int]] = {}
    for cid, day, holder in session.execute(
        select(
            CampaignDayClaim.customer_id, CampaignDayClaim.local_day, CampaignDayClaim.campaign_id
        ).where(CampaignDayClaim.customer_id.in_(ids), CampaignDayClaim.local_day.in_(days))
    ):
        claims.setdefault(cid, {})[day] = holder
    tried = _attempts(session, ids, campaign_id)
    out = {}
    for cid, consent, zone, birthday, tags in people:
        count, outcome, at = tried.get(cid, (0, None, None))
        own = numbers.get(cid, [])
        out[cid] = DialFacts(
            customer_id=cid,
            consent=bool(consent),
            opted_out=cid in opted,
            numbers=tuple(own),
            do_not_call=frozenset(n for n in own if n in blocked),
            timezone=zone,
            claims=claims.get(cid, {}),
            attempts=count,
            last_outcome=outcome,
            last_attempt_at=at,
            birthday=birthday,
            tagged_child=bool(set(tags or ()) & set(CHILD_TAGS)),
            guardian_consent=cid in guarded,
        )
    return out


def _attempts(
    session: Session, ids: Sequence[int], campaign_id: int | None
) -> dict[int, tuple[int, str | None, datetime | None]]:
    """Per customer: this campaign's attempts so far (a ``lost`` one, never placed, does not
    count), the last outcome and when it was made."""
    if campaign_id is None:
        return {}
    rows = session.execute(
        select(
            DialAttempt.customer_id,
            DialAttempt.attempt_no,
            DialAttempt.outcome,
            func.coalesce(DialAttempt.finished_at, DialAttempt.created_at),
        )
        .where(DialAttempt.campaign_id == campaign_id, DialAttempt.customer_id.in_(ids))
        .order_by(DialAttempt.customer_id, DialAttempt.attempt_no)
    ).all()
    out: dict[int, tuple[int, str | None, datetime | None]] = {}
    for cid, _number, outcome, at in rows:
        counted = out.get(cid, (0, None, None))[0] + (outcome != "lost")
        out[cid] = (counted, outcome, at)
    return out


@dataclass
class Preview:
    """Who is in and who is left out (with counts per reason)."""

    audience: int = 0
    included: list[int] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(self.excluded.values()))


def preview(
    session: Session,
    customer_ids: Sequence[int],
    now_utc: datetime,
    policy: CallingPolicy,
    campaign_id: int | None = None,
    left_out: Mapping[int, str] | None = None,
) -> Preview:
    """:func:`dial_decision` over the audience, now; ``left_out`` are the customers the
    selection already left out (:class:`~crm_bridge.campaigns.audience.Audience`), by reason,
    listed first."""
    left_out = left_out or {}
    result = Preview(audience=len(customer_ids) + len(left_out), excluded=dict(left_out))
    facts = load_facts(session, customer_ids, now_utc, campaign_id)
    for cid in customer_ids:
        decision = dial_decision(facts[cid], now_utc, policy, campaign_id)
        if decision.ok:
            result.included.append(cid)
        else:
            result.excluded[cid] = decision.reason or "unknown"
    return result
