"""Who a campaign calls, and whether a customer may be dialled now.

Two halves:

- **Audience rules** (:data:`Rule`), stored as JSON on the campaign and evaluated with SQL
  against the archive by :func:`select_audience`: birthday today (solar, or lunar for customers
  who keep a lunar birthday), N days after a purchase, the half month's top spenders of each
  department plus customers tagged important, complaint follow-up, a festival list, an uploaded
  list of numbers or card nos. A campaign's audience is the union of its rules.
- **The dial decision** (:func:`dial_decision`), a pure function of what is known of one
  customer (:class:`DialFacts`), the time and the :class:`CallingPolicy`: consent, opt-out and the
  do-not-call list, a valid number, one campaign call a day, the attempt cap, the retry delay
  after the last outcome, blackout dates, weekdays and calling hours in the customer's own zone.
  The runner calls it again at the moment of dialling; :func:`preview` runs it over the
  audience to show who is in and who is left out, and why.
"""

from __future__ import annotations

import calendar
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import phonenumbers
from lunar_python import Solar
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from sqlalchemy import (
    Select,
    and_,
    exists,
    extract,
    func,
    literal_column,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from crm_bridge.customers.card import lunar_date
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import (
    CampaignDayClaim,
    Complaint,
    Customer,
    CustomerOptOut,
    CustomerPhone,
    DepartmentSpend,
    DialAttempt,
    DoNotCall,
    Purchase,
)

FESTIVALS = ("春节", "元宵", "清明", "端午", "七夕", "中秋", "重阳", "腊八", "除夕", "元旦",
             "劳动", "国庆")  # fmt: skip
"""Festivals a scheduler may pick, named as lunar-python names them (see :func:`festival_name`)."""
IMPORTANT_TAGS = ("important", "重要")
RETRYABLE_OUTCOMES = ("busy", "no_answer", "congestion", "failed", "lost")
_IN_CHUNK = 500

REASON_LABELS: dict[str, str] = {
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
PERMANENT_REASONS = frozenset({"no_consent", "do_not_call", "no_valid_number",
                               "attempts_exhausted"})  # fmt: skip
"""Reasons that will not change by waiting; the others pass with time."""


# --------------------------------------------------------------------------- audience rules


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BirthdayRule(_Rule):
    """生日: birthday today, solar or lunar (the customer's own kind)."""

    kind: Literal["birthday"] = "birthday"


class AfterPurchaseRule(_Rule):
    """购买后回访: a purchase exactly ``days`` days ago."""

    kind: Literal["after_purchase"] = "after_purchase"
    days: int = Field(ge=0, le=3650)


class TopSpendersRule(_Rule):
    """半月消费前N名: each department's top ``top_n`` spenders over the last whole half month,
    plus the customers tagged important."""

    kind: Literal["top_spenders"] = "top_spenders"
    top_n: int = Field(ge=1, le=10_000)
    include_important: bool = True


class ComplaintFollowupRule(_Rule):
    """投诉回访: a complaint resolved ``days_after`` days ago (in the center's calendar)."""

    kind: Literal["complaint_followup"] = "complaint_followup"
    days_after: int = Field(default=1, ge=0, le=365)


class FestivalRule(_Rule):
    """节日问候: everyone, on the days of the festivals listed."""

    kind: Literal["festival"] = "festival"
    festivals: list[str] = Field(min_length=1)

    @field_validator("festivals")
    @classmethod
    def _known(cls, values: list[str]) -> list[str]:
        names = [festival_name(value) for value in values]
        unknown = [name for name in names if name not in FESTIVALS]
        if unknown:
            raise ValueError(f"unknown festival: {', '.join(unknown)}")
        return names


class UploadedListRule(_Rule):
    """上传名单: phone numbers (any form) or card nos."""

    kind: Literal["uploaded"] = "uploaded"
    entries: list[str] = Field(min_length=1, max_length=100_000)


Rule = Annotated[
    BirthdayRule
    | AfterPurchaseRule
    | TopSpendersRule
    | ComplaintFollowupRule
    | FestivalRule
    | UploadedListRule,
    Field(discriminator="kind"),
]
_RULES = TypeAdapter(list[Rule])


def parse_rules(data: object) -> list[Rule]:
    """Rules from their JSON form; raises pydantic's ValidationError on a bad one."""
    return _RULES.validate_python(data)


def rules_json(rules: Sequence[Rule]) -> list[dict]:
    return _RULES.dump_python(list(rules), mode="json")


# --------------------------------------------------------------------------- calendar helpers


def birthday_days(today: date) -> tuple[list[int], int]:
    """The solar days of ``today``'s month whose birthdays are greeted today, and the month:
    29 February birthdays are greeted on 28 February in a common year."""
    days = [today.day]
    if (today.month, today.day) == (2, 28) and not calendar.isleap(today.year):
        days.append(29)
    return days, today.month


def lunar_birthday_days(today: date) -> tuple[list[int], int] | None:
    """The lunar (days, month) greeted today; None during a leap month (闰月), when nobody is
    (a customer born in a leap month is greeted in the ordinary month of that number). A 30th
    is greeted on the 29th when this year's month has only 29 days."""
    lunar = lunar_date(today)
    if lunar.leap:
        return None
    days = [lunar.day]
    if lunar.day == lunar.days_in_month == 29:
        days.append(30)
    return days, lunar.month


def festivals_on(day: date) -> set[str]:
    """The festivals (lunar, solar and the 清明 solar term) falling on ``day``."""
    solar = Solar.fromYmd(day.year, day.month, day.day)
    lunar = solar.getLunar()
    names = [*lunar.getFestivals(), *solar.getFestivals()]
    if lunar.getJieQi():
        names.append(lunar.getJieQi())
    return {festival_name(name) for name in names}


def festival_name(name: str) -> str:
    """端午节 -> 端午, 国庆节 -> 国庆; 春节 stays 春节."""
    name = name.strip()
    return name[:-1] if name.endswith("节") and len(name) > 2 else name


def last_half_month(today: date) -> tuple[date, date]:
    """The last whole half month before ``today``: the 1st-15th or the 16th-month end."""
    if today.day > 15:
        return today.replace(day=1), today.replace(day=15)
    last_month_end = today.replace(day=1) - timedelta(days=1)
    return last_month_end.replace(day=16), last_month_end


def local_day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants at which ``day`` starts and ends in ``zone``."""
    start = datetime.combine(day, time(0), zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC)
    return start, end


# --------------------------------------------------------------------------- rules as SQL


def _has_lunar_birthday():
    return and_(
        Customer.lunar_birthday.is_(True),
        Customer.lunar_birth_month.is_not(None),
        Customer.lunar_birth_day.is_not(None),
    )


def _birthday_query(today: date) -> Select:
    days, month = birthday_days(today)
    solar = and_(
        ~_has_lunar_birthday(),
        Customer.birthday.is_not(None),
        extract("month", Customer.birthday) == month,
        extract("day", Customer.birthday).in_(days),
    )
    condition = solar
    lunar = lunar_birthday_days(today)
    if lunar is not None:
        lunar_days, lunar_month = lunar
        condition = or_(
            solar,
            and_(
                _has_lunar_birthday(),
                Customer.lunar_birth_month == lunar_month,
                Customer.lunar_birth_day.in_(lunar_days),
            ),
        )
    return select(Customer.id).where(condition)


def _tagged_important(session: Session):
    # Most customers have no tag: the partial index ix_customers_tagged holds only the others,
    # and a query can use it only when it says the same (literally: no bound parameter).
    tagged = Customer.tags != literal_column("'[]'")
    if session.get_bind().dialect.name == "postgresql":
        tags = type_coerce(Customer.tags, JSONB)
        return and_(tagged, or_(*(tags.contains([tag]) for tag in IMPORTANT_TAGS)))
    each = func.json_each(Customer.tags).table_valued("value")
    important = (
        select(literal_column("1")).select_from(each).where(each.c.value.in_(IMPORTANT_TAGS))
    )
    return and_(tagged, exists(important))


def top_spender_ids(session: Session, half_month: date, top_n: int) -> set[int]:
    """Each department's ``top_n`` biggest spenders in the half month starting ``half_month``,
    ties going to the lower customer id.

    Read off ``department_spend``, which the database keeps summed per half month: per
    department (found one index seek at a time), the ``top_n``-th biggest sum, then the few
    customers reaching it, ordered here. Summing every purchase of the half month and ranking
    it in SQL took seconds at a million customers.
    """
    spend = DepartmentSpend
    in_half = spend.half_month == half_month
    next_department = select(func.min(spend.department)).where(in_half)
    found: set[int] = set()
    department = session.scalar(next_department)
    while department is not None:
        of_department = and_(in_half, spend.department == department)
        threshold = session.scalar(
            select(spend.cents)
            .where(of_department)
            .order_by(spend.cents.desc())
            .offset(top_n - 1)
            .limit(1)
        )
        query = select(spend.customer_id, spend.cents).where(of_department)
        if threshold is not None:
            query = query.where(spend.cents >= threshold)
        ranked = sorted(session.execute(query), key=lambda row: (-row.cents, row.customer_id))
        found.update(row.customer_id for row in ranked[:top_n])
        department = session.scalar(next_department.where(spend.department > department))
    return found


def _top_spenders_query(session: Session, rule: TopSpendersRule, today: date) -> Select:
    first, _ = last_half_month(today)
    ids = top_spender_ids(session, first, rule.top_n)
    query = select(Customer.id).where(Customer.id.in_(sorted(ids)))
    if rule.include_important:
        query = query.union(select(Customer.id).where(_tagged_important(session)))
    return query


def _uploaded_query(rule: UploadedListRule, region: str) -> Select:
    numbers, cards = set(), set()
    for entry in rule.entries:
        text = entry.strip()
        if not text:
            continue
        e164 = normalize_phone(text, region).e164
        (numbers.add(e164) if e164 else cards.add(text))
    by_number = select(CustomerPhone.customer_id).where(CustomerPhone.number_e164.in_(numbers))
    by_card = select(Customer.id).where(Customer.card_no.in_(cards))
    return by_number.union(by_card)


def rule_query(session: Session, rule: Rule, today: date, zone: ZoneInfo, region: str) -> Select:
    """The ids of the customers ``rule`` picks on ``today`` (the center's date)."""
    match rule:
        case BirthdayRule():
            return _birthday_query(today)
        case AfterPurchaseRule(days=days):
            day = today - timedelta(days=days)
            return select(Purchase.customer_id).where(Purchase.purchased_on == day)
        case TopSpendersRule():
            return _top_spenders_query(session, rule, today)
        case ComplaintFollowupRule(days_after=days_after):
            start, end = local_day_bounds(today - timedelta(days=days_after), zone)
            return select(Complaint.customer_id).where(
                Complaint.status.in_(("resolved", "closed")),
                Complaint.resolved_at >= start,
                Complaint.resolved_at < end,
            )
        case FestivalRule(festivals=festivals):
            if festivals_on(today) & set(festivals):
                return select(Customer.id)
            return select(Customer.id).where(literal_column("1") == 0)
        case UploadedListRule():
            return _uploaded_query(rule, region)
    raise TypeError(f"unknown rule {rule!r}")


def select_audience(
    session: Session, rules: Sequence[Rule], today: date, zone: ZoneInfo, region: str = "CN"
) -> list[int]:
    """The union of what every rule picks, as sorted customer ids."""
    found: set[int] = set()
    for rule in rules:
        found.update(session.scalars(rule_query(session, rule, today, zone, region)))
    return sorted(found)


# --------------------------------------------------------------------------- the dial decision


DEFAULT_RETRY_MINUTES = {"busy": 10, "no_answer": 60, "congestion": 5, "failed": 30, "lost": 5}


class PolicyIn(BaseModel):
    """A campaign's calling policy as stored (JSON) and edited on the scheduler's page."""

    model_config = ConfigDict(extra="forbid")

    start: time = time(9, 0)
    end: time = time(20, 0)
    weekdays: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4, 5, 6])
    """Monday is 0."""
    blackout_dates: list[date] = Field(default_factory=list)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_minutes: dict[
        Literal["busy", "no_answer", "congestion", "failed", "lost"], float
    ] = Field(default_factory=lambda: dict(DEFAULT_RETRY_MINUTES))
    """Fractions allowed: 0.5 is half a minute."""

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

    def policy(self, center_timezone: str) -> CallingPolicy:
        return CallingPolicy(
            start=self.start,
            end=self.end,
            weekdays=frozenset(self.weekdays),
            blackout_dates=frozenset(self.blackout_dates),
            max_attempts=self.max_attempts,
            retry_minutes=dict(self.retry_minutes),
            center_timezone=center_timezone,
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
    retry_minutes: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_RETRY_MINUTES)
    )
    center_timezone: str = "Asia/Shanghai"

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

    Checked in this order (the first that fails is the reason): consent, opt-out and the
    do-not-call list, a valid number, the attempt cap, another campaign's call today, the retry
    delay after the last outcome, blackout dates, weekdays, calling hours. Dates and hours are
    the customer's own (their zone, else the center's).
    """
    local = policy.local(now_utc, customer.timezone)
    day = local.date()
    callable_numbers = [n for n in customer.numbers if n not in customer.do_not_call]
    holder = customer.claims.get(day)
    wait_until = retry_after(customer, policy)
    checks: list[tuple[bool, str]] = [
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


def retry_after(customer: DialFacts, policy: CallingPolicy) -> datetime | None:
    """When the customer may be dialled again after their last outcome (None: no wait)."""
    if customer.last_attempt_at is None or customer.last_outcome not in RETRYABLE_OUTCOMES:
        return None
    minutes = policy.retry_minutes.get(customer.last_outcome, 0)
    return customer.last_attempt_at + timedelta(minutes=minutes)


# --------------------------------------------------------------------------- facts and preview


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
        select(Customer.id, Customer.consent_to_calls, Customer.timezone).where(
            Customer.id.in_(ids)
        )
    ).all()
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
    for cid, consent, zone in people:
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
) -> Preview:
    """:func:`dial_decision` over the audience, now."""
    result = Preview(audience=len(customer_ids))
    facts = load_facts(session, customer_ids, now_utc, campaign_id)
    for cid in customer_ids:
        decision = dial_decision(facts[cid], now_utc, policy, campaign_id)
        if decision.ok:
            result.included.append(cid)
        else:
            result.excluded[cid] = decision.reason or "unknown"
    return result
