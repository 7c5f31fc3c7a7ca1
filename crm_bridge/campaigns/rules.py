"""Who a campaign calls: the audience rules.

- **Audience rules** (:data:`Rule`), stored as JSON on the campaign and evaluated with SQL
  against the archive by :func:`rule_query`: birthday today (solar, or lunar for customers
  who keep a lunar birthday), N days after a purchase, the half month's top spenders of each
  department plus customers tagged important, complaint follow-up, a festival list, an uploaded
  list of numbers or card nos. A campaign's audience is the union of its rules, less the
  minors of a marketing campaign (:mod:`crm_bridge.campaigns.audience`).

Whether one of them may be dialled now is :mod:`crm_bridge.campaigns.dial_decision`.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

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

from crm_bridge.customers.birthdays import lunar_date
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import (
    Complaint,
    Customer,
    CustomerPhone,
    DepartmentSpend,
    Purchase,
)

FESTIVALS = ("春节", "元宵", "清明", "端午", "七夕", "中秋", "重阳", "腊八", "除夕", "元旦",
             "劳动", "国庆")  # fmt: skip
"""Festivals a scheduler may pick, named as lunar-python names them (see :func:`festival_name`)."""
IMPORTANT_TAGS = ("important", "重要")


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


def uploaded_entries(rule: UploadedListRule, region: str) -> list[tuple[str, str | None]]:
    """The list's entries as typed (blank ones dropped), each with its E.164 number when it
    reads as a phone number; any other entry is taken for a card no."""
    texts = (entry.strip() for entry in rule.entries)
    return [(text, normalize_phone(text, region).e164) for text in texts if text]


def _uploaded_query(rule: UploadedListRule, region: str) -> Select:
    entries = uploaded_entries(rule, region)
    numbers = {e164 for _, e164 in entries if e164}
    cards = {text for text, e164 in entries if not e164}
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
