"""The data of the agent's screen pop: who is calling, and their customer card.

:func:`lookup_caller` turns a caller ID into a :class:`PopLookup`: the number normalised once,
the customers who hold it, and a :class:`CustomerCard` for each; :func:`lookup_callers` does
the same for the callers of several calls with the same few queries. The models are pydantic, so a
lookup goes to the browser as it is (``model_dump(mode="json")``: money as ``"1234.50"``, times
in ISO 8601 with the center's offset).

A pop must be on screen before the agent picks up, also with a million customers, so the cards
are read with a fixed handful of indexed queries whatever the number of customers on the number
or of rows behind them: the sums and counts are done by the database, and every list is cut to
its newest rows in SQL, one ``LIMIT``-ed query per customer joined by ``UNION ALL`` (SQLite has
no ``LATERAL``), each walking the ``(customer_id, ...)`` index of its table.

Birthdays (:func:`is_birthday_today`) follow the center's calendar, solar or Chinese lunar; the
lunar calendar is lunar-python's, computed astronomically and right for 1900-2100 and beyond.
"""

from __future__ import annotations

import calendar
import functools
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol, TypeVar

from lunar_python import LunarMonth, Solar
from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy import (
    ColumnElement,
    CompoundSelect,
    Row,
    Select,
    bindparam,
    func,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from crm_bridge.customers.numbers import PhoneKind, PhoneNumber, normalize_phone
from crm_bridge.db.models import (
    Call,
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    VisitRecord,
)

LAST_ITEMS = 5
"""How many purchases, visits and calls a card shows, newest first."""
MAX_CARDS = 10
"""The most cards one pop shows: a number held by more customers is a switchboard."""
NO_CUSTOMER = 0
"""An id no customer has (ids start at 1): what the unused parts of a list query ask for."""
OPEN_COMPLAINTS_SHOWN = 10
"""How many open complaints a card lists, newest first; ``open_complaint_count`` has them all."""
OPEN_COMPLAINT_STATUSES = ("open", "in_progress")
CENT = Decimal("0.01")
LineT = TypeVar("LineT", bound=BaseModel)

BirthdayKind = Literal["solar", "lunar"]
LookupKind = Literal["known", "unknown", "multiple", "withheld", "internal"]

LUNAR_MONTH_NAMES = ("正月", "二月", "三月", "四月", "五月", "六月")
LUNAR_MONTH_NAMES += ("七月", "八月", "九月", "十月", "冬月", "腊月")
_CHINESE_DIGITS = "一二三四五六七八九十"


def _to_cents(value: Decimal) -> Decimal:
    return value.quantize(CENT)


Money = Annotated[Decimal, AfterValidator(_to_cents)]
"""An amount with exactly two decimals; JSON gives it as a string (``"1234.50"``)."""


class Phone(BaseModel):
    number_e164: str = Field(repr=False)
    kind: str


class PurchaseLine(BaseModel):
    id: int
    purchased_on: date
    department: str | None
    amount: Money
    items: str | None


class VisitLine(BaseModel):
    id: int
    visited_at: datetime
    place: str | None
    channel: str
    opinions: str | None
    suggestions: str | None
    visited_by: str | None


class ComplaintLine(BaseModel):
    id: int
    received_at: datetime
    content: str
    status: str
    handler: str | None
    escalated_to: str | None


class CallLine(BaseModel):
    id: int
    offered_at: datetime | None
    direction: str | None
    agent: str | None
    disposition: str | None
    talk_seconds: float | None


class CustomerCard(BaseModel):
    """One customer as the agent sees them while the phone rings.

    ``birthday`` is the solar date of birth (it gives ``age``); a customer who keeps a lunar
    birthday has ``lunar_birth_month`` / ``lunar_birth_day`` and ``birthday_kind == "lunar"``.
    Times are in the center's zone.
    """

    id: int
    card_no: str
    name: str
    gender: str | None
    vip_level: str | None
    employer: str | None
    department: str | None
    phones: list[Phone]
    birthday: date | None
    lunar_birth_month: int | None
    lunar_birth_day: int | None
    birthday_kind: BirthdayKind | None
    birthday_label: str | None
    birthday_today: bool
    age: int | None
    lifetime_spend: Money
    spend_last_12_months: Money
    last_purchases: list[PurchaseLine]
    last_visits: list[VisitLine]
    open_complaints: list[ComplaintLine]
    open_complaint_count: int
    last_calls: list[CallLine]
    tags: list[str]
    consent_to_calls: bool


class PopLookup(BaseModel):
    """Who is calling: ``cards`` has one card when ``known``, two or more when ``multiple``
    (a family phone), none otherwise. An invalid number counts as ``unknown``.

    ``customer_count`` is how many customers hold the number; past :data:`MAX_CARDS` (a
    switchboard rather than a family phone) only the first ones, oldest first, get a card.
    """

    kind: LookupKind
    number_e164: str | None = Field(default=None, repr=False)
    customer_count: int = 0
    cards: list[CustomerCard] = Field(default_factory=list)


def lookup_caller(
    session: Session,
    raw_number: str | None,
    *,
    zone: tzinfo,
    region: str = "CN",
    outside_line_prefix: str | None = None,
    today: date | None = None,
) -> PopLookup:
    """The pop for a caller ID as Asterisk gives it.

    ``zone`` is the center's zone (times on the cards are shown in it); ``today`` is the date
    there and defaults to the current one; ``region`` and ``outside_line_prefix`` are how
    :func:`~crm_bridge.customers.numbers.normalize_phone` reads the number.
    """
    (found,) = lookup_callers(
        session,
        [raw_number],
        zone=zone,
        region=region,
        outside_line_prefix=outside_line_prefix,
        today=today,
    )
    return found


def lookup_callers(
    session: Session,
    raw_numbers: Sequence[str | None],
    *,
    zone: tzinfo,
    region: str = "CN",
    outside_line_prefix: str | None = None,
    today: date | None = None,
) -> list[PopLookup]:
    """:func:`lookup_caller` for several caller IDs at once, in their order.

    The holders of every number come from one query and the cards of all of them from six per
    :data:`MAX_CARDS` customers: when fifty calls arrive together (``bench/pop_latency.py``)
    that is a few dozen queries instead of several hundred.
    """
    numbers = [normalize_phone(raw, region, outside_line_prefix) for raw in raw_numbers]
    e164s = sorted({n.e164 for n in numbers if n.kind is PhoneKind.E164 and n.e164})
    holders: defaultdict[str, list[int]] = defaultdict(list)
    if e164s:
        for row in session.connection().execute(_holders_query(), {"numbers": e164s}):
            holders[row.number_e164].append(row.customer_id)
    today = today or datetime.now(zone).date()
    shown = sorted({i for ids in holders.values() for i in ids[:MAX_CARDS]})
    cards = {
        card.id: card
        for start in range(0, len(shown), MAX_CARDS)
        for card in build_cards(session, shown[start : start + MAX_CARDS], today=today, zone=zone)
    }
    return [_pop_lookup(number, holders, cards) for number in numbers]


def _pop_lookup(
    number: PhoneNumber, holders: dict[str, list[int]], cards: dict[int, CustomerCard]
) -> PopLookup:
    if number.kind is PhoneKind.WITHHELD:
        return PopLookup(kind="withheld")
    if number.kind is PhoneKind.INTERNAL:
        return PopLookup(kind="internal")
    if number.e164 is None:
        return PopLookup(kind="unknown")
    ids = holders.get(number.e164, [])
    kind: LookupKind = "unknown" if not ids else "known" if len(ids) == 1 else "multiple"
    return PopLookup(
        kind=kind,
        number_e164=number.e164,
        customer_count=len(ids),
        cards=[cards[i] for i in ids[:MAX_CARDS] if i in cards],
    )


def build_cards(
    session: Session, customer_ids: Sequence[int], *, today: date, zone: tzinfo
) -> list[CustomerCard]:
    """The cards of up to :data:`MAX_CARDS` customers by id, oldest customer first (ids that
    are not in the archive are left out), read with six queries whatever their number.
    """
    ids = sorted(set(customer_ids))
    if len(ids) > MAX_CARDS:
        raise ValueError(f"at most {MAX_CARDS} cards at once, asked for {len(ids)}")
    if not ids:
        return []
    connection = session.connection()
    year_ago = _same_day_in_year(today, today.year - 1)
    customers = connection.execute(
        _customers_query(), {"ids": ids, "today": today, "year_ago": year_ago}
    ).all()
    phones = _grouped(connection.execute(_phones_query(), {"ids": ids}))
    shape = _list_shape(len(ids))
    each = {f"customer_{index}": customer_id for index, customer_id in enumerate(ids)}
    each |= {f"customer_{index}": NO_CUSTOMER for index in range(len(ids), shape)}
    purchases = _grouped(connection.execute(_purchases_query(shape), each))
    visits = _grouped(connection.execute(_visits_query(shape), each))
    complaints = _grouped(connection.execute(_open_complaints_query(shape), each))
    calls = _grouped(connection.execute(_calls_query(shape), each))
    cards = []
    for customer in customers:
        is_today, kind = is_birthday_today(customer, today)
        cards.append(
            CustomerCard(
                id=customer.id,
                card_no=customer.card_no,
                name=customer.name,
                gender=customer.gender,
                vip_level=customer.vip_level,
                employer=customer.employer,
                department=customer.department,
                phones=[Phone.model_validate(row._asdict()) for row in phones[customer.id]],
                birthday=customer.birthday,
                lunar_birth_month=customer.lunar_birth_month if kind == "lunar" else None,
                lunar_birth_day=customer.lunar_birth_day if kind == "lunar" else None,
                birthday_kind=kind,
                birthday_label=birthday_label(customer),
                birthday_today=is_today,
                age=age_on(customer.birthday, today),
                lifetime_spend=customer.lifetime_spend,
                spend_last_12_months=customer.spend_last_12_months,
                last_purchases=_lines(PurchaseLine, purchases[customer.id], "purchased_on"),
                last_visits=_lines(VisitLine, visits[customer.id], "visited_at", zone),
                open_complaints=_lines(ComplaintLine, complaints[customer.id], "received_at", zone),
                open_complaint_count=customer.open_complaint_count,
                last_calls=_lines(CallLine, calls[customer.id], "offered_at", zone),
                tags=list(customer.tags or []),
                consent_to_calls=customer.consent_to_calls,
            )
        )
    return cards


# --- queries ---------------------------------------------------------------------------------
# Built once, with bound parameters, and run on the session's connection: building and
# compiling a statement costs far more than SQLite takes to answer it.


@functools.cache
def _holders_query() -> Select[Any]:
    """The ids of the customers holding each of ``:numbers``, oldest customer first (a number
    is unique per customer, so no DISTINCT)."""
    return (
        select(CustomerPhone.number_e164, CustomerPhone.customer_id)
        .where(CustomerPhone.number_e164.in_(bindparam("numbers", expanding=True)))
        .order_by(CustomerPhone.customer_id)
    )


@functools.cache
def _customers_query() -> Select[Any]:
    """The customers ``:ids`` with their spend (lifetime, and after ``:year_ago`` up to
    ``:today``) and the number of their open complaints, each a correlated indexed subquery.
    """

    def spend(*conditions: ColumnElement[bool]) -> Any:
        total = func.coalesce(func.sum(Purchase.amount), 0)
        return (
            select(total).where(Purchase.customer_id == Customer.id, *conditions).scalar_subquery()
        )

    open_count = (
        select(func.count())
        .where(
            Complaint.customer_id == Customer.id,
            Complaint.status.in_(OPEN_COMPLAINT_STATUSES),
        )
        .scalar_subquery()
    )
    recent = spend(
        Purchase.purchased_on > bindparam("year_ago"), Purchase.purchased_on <= bindparam("today")
    )
    return (
        select(
            Customer.id,
            Customer.card_no,
            Customer.name,
            Customer.gender,
            Customer.birthday,
            Customer.lunar_birthday,
            Customer.lunar_birth_month,
            Customer.lunar_birth_day,
            Customer.employer,
            Customer.department,
            Customer.vip_level,
            Customer.tags,
            Customer.consent_to_calls,
            spend().label("lifetime_spend"),
            recent.label("spend_last_12_months"),
            open_count.label("open_complaint_count"),
        )
        .where(Customer.id.in_(bindparam("ids", expanding=True)))
        .order_by(Customer.id)
    )


@functools.cache
def _phones_query() -> Select[Any]:
    return (
        select(CustomerPhone.customer_id, CustomerPhone.number_e164, CustomerPhone.kind)
        .where(CustomerPhone.customer_id.in_(bindparam("ids", expanding=True)))
        .order_by(CustomerPhone.customer_id, CustomerPhone.id)
    )


@functools.lru_cache(maxsize=MAX_CARDS)
def _purchases_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
    columns = select(
        Purchase.customer_id,
        Purchase.id,
        Purchase.purchased_on,
        Purchase.department,
        Purchase.amount,
        Purchase.items,
    )
    newest = (Purchase.purchased_on.desc(), Purchase.id.desc())
    return _newest_per_customer(columns, Purchase.customer_id, newest, customers, LAST_ITEMS)


@functools.lru_cache(maxsize=MAX_CARDS)
def _visits_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
    columns = select(
        VisitRecord.customer_id,
        VisitRecord.id,
        VisitRecord.visited_at,
        VisitRecord.place,
        VisitRecord.channel,
        VisitRecord.opinions,
        VisitRecord.suggestions,
        VisitRecord.visited_by,
    )
    newest = (VisitRecord.visited_at.desc(), VisitRecord.id.desc())
    return _newest_per_customer(columns, VisitRecord.customer_id, newest, customers, LAST_ITEMS)


@functools.lru_cache(maxsize=MAX_CARDS)
def _open_complaints_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
    columns = select(
        Complaint.customer_id,
        Complaint.id,
        Complaint.received_at,
        Complaint.content,
        Complaint.status,
        Complaint.handler,
        Complaint.escalated_to,
    ).where(Complaint.status.in_(OPEN_COMPLAINT_STATUSES))
    newest = (Complaint.received_at.desc(), Complaint.id.desc())
    return _newest_per_customer(
        columns, Complaint.customer_id, newest, customers, OPEN_COMPLAINTS_SHOWN
    )


@functools.lru_cache(maxsize=MAX_CARDS)
def _calls_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
    columns = select(
        Call.customer_id,
        Call.id,
        Call.offered_at,
        Call.direction,
        Call.agent,
        Call.disposition,
        Call.talk_seconds,
    )
    newest = (Call.offered_at.desc().nulls_last(), Call.id.desc())
    return _newest_per_customer(columns, Call.customer_id, newest, customers, LAST_ITEMS)


def _list_shape(customers: int) -> int:
    """How many customers a list query is built for: one, or :data:`MAX_CARDS` (the rest
    asked for :data:`NO_CUSTOMER`, an index lookup that finds nothing). Two shapes, not ten,
    so each is compiled once (:func:`warm_up`) rather than on the first burst of calls that
    needs it; a compile of the ten-customer union costs several milliseconds."""
    return 1 if customers == 1 else MAX_CARDS


def warm_up(session: Session) -> None:
    """Compile the card queries of both shapes now (at start-up) instead of on the first
    calls that need them."""
    today = date.today()
    for shape in {1, MAX_CARDS}:
        build_cards(session, list(range(-shape, 0)), today=today, zone=UTC)


def _newest_per_customer(
    columns: Select[Any],
    customer_column: ColumnElement[Any],
    newest_first: tuple[ColumnElement[Any], ...],
    customers: int,
    limit: int,
) -> Select[Any] | CompoundSelect[Any]:
    """The first ``limit`` rows of each of ``:customer_0`` ... ``:customer_N``, one indexed
    ``LIMIT`` query per customer joined by ``UNION ALL``.
    """
    parts = [
        columns.where(customer_column == bindparam(f"customer_{index}"))
        .order_by(*newest_first)
        .limit(limit)
        for index in range(customers)
    ]
    if len(parts) == 1:
        return parts[0]
    return union_all(*(select(part.subquery()) for part in parts))


def _grouped(rows: Iterable[Row[Any]]) -> defaultdict[int, list[Row[Any]]]:
    grouped: defaultdict[int, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        grouped[row.customer_id].append(row)
    return grouped


def _lines(
    model: type[LineT], rows: list[Row[Any]], when: str, zone: tzinfo | None = None
) -> list[LineT]:
    """Rows as ``model``, newest first by ``when`` then id, times moved into ``zone``.

    The rows of one customer already come newest first from SQL, but the order of rows across a
    ``UNION ALL`` is not promised, hence the sort (of a handful of rows).
    """
    newest_first = sorted(rows, key=_newest_key(when), reverse=True)
    lines = []
    for row in newest_first:
        values = row._asdict()
        if zone is not None and values[when] is not None:
            values[when] = values[when].astimezone(zone)
        lines.append(model.model_validate(values))
    return lines


def _newest_key(when: str) -> Callable[[Row[Any]], tuple[bool, Any, int]]:
    """Sort key: rows with no time come last, as ``NULLS LAST`` puts them."""

    def key(row: Row[Any]) -> tuple[bool, Any, int]:
        moment = getattr(row, when)
        return (moment is not None, moment or 0, row.id)

    return key


# --- birthdays -------------------------------------------------------------------------------


class BirthdayHolder(Protocol):
    """What the birthday functions read of a customer: a :class:`Customer` or a row."""

    @property
    def birthday(self) -> date | None: ...

    @property
    def lunar_birthday(self) -> bool: ...

    @property
    def lunar_birth_month(self) -> int | None: ...

    @property
    def lunar_birth_day(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class LunarDay:
    """A date of the Chinese lunar calendar; ``days_in_month`` is 29 or 30."""

    year: int
    month: int
    day: int
    leap: bool
    days_in_month: int


def is_birthday_today(customer: BirthdayHolder, today: date) -> tuple[bool, BirthdayKind | None]:
    """Whether ``today`` (the date in the center's zone) is the customer's birthday, and which
    birthday the customer keeps (None: none known).

    Solar: the same month and day; a 29 February birthday is greeted on 28 February in a common
    year. Lunar (``lunar_birthday`` with the lunar month and day): the same lunar month and day,
    with two rules for days a lunar year may lack:

    - a customer born in a leap month (闰月; the archive keeps only the month's number) is
      greeted in the ordinary month of that number, so nobody is greeted during a leap month;
    - a 30th is greeted on the 29th when this year's month has only 29 days.
    """
    lunar = _lunar_month_day(customer)
    if lunar is not None:
        return _is_lunar_birthday(*lunar, lunar_date(today)), "lunar"
    if customer.birthday is not None:
        return _same_day_in_year(customer.birthday, today.year) == today, "solar"
    return False, None


def birthday_label(customer: BirthdayHolder) -> str | None:
    """The birthday as the agent reads it: ``农历八月十五`` or ``3月5日``."""
    lunar = _lunar_month_day(customer)
    if lunar is not None:
        month, day = lunar
        return f"农历{LUNAR_MONTH_NAMES[month - 1]}{lunar_day_name(day)}"
    if customer.birthday is not None:
        return f"{customer.birthday.month}月{customer.birthday.day}日"
    return None


def _lunar_month_day(customer: BirthdayHolder) -> tuple[int, int] | None:
    """The lunar month and day of a customer who keeps a (complete) lunar birthday."""
    month, day = customer.lunar_birth_month, customer.lunar_birth_day
    if customer.lunar_birthday and month and day:
        return month, day
    return None


def lunar_day_name(day: int) -> str:
    """初一 ... 初十, 十一 ... 十九, 二十, 廿一 ... 廿九, 三十."""
    if day <= 10:
        return "初" + _CHINESE_DIGITS[day - 1]
    if day < 20:
        return "十" + _CHINESE_DIGITS[day - 11]
    if day == 20:
        return "二十"
    if day < 30:
        return "廿" + _CHINESE_DIGITS[day - 21]
    return "三十"


def age_on(birthday: date | None, today: date) -> int | None:
    """Full years on ``today``; a 29 February child turns older on 28 February in a common year,
    the day they are greeted. None without a date of birth or with one in the future.
    """
    if birthday is None or birthday > today:
        return None
    years = today.year - birthday.year
    if _same_day_in_year(birthday, today.year) > today:
        years -= 1
    return years


@functools.lru_cache(maxsize=64)
def lunar_date(solar: date) -> LunarDay:
    """The Chinese lunar date of a solar date.

    Cached: a center asks for the same few days all day, and one conversion costs a fraction of
    a millisecond (much more on the first day of a lunar year not yet seen).
    """
    lunar = Solar.fromYmd(solar.year, solar.month, solar.day).getLunar()
    month = lunar.getMonth()  # negative in a leap month
    days = LunarMonth.fromYm(lunar.getYear(), month).getDayCount()
    return LunarDay(lunar.getYear(), abs(month), lunar.getDay(), month < 0, days)


def _is_lunar_birthday(month: int, day: int, today: LunarDay) -> bool:
    if today.leap or today.month != month:
        return False
    return today.day == min(day, today.days_in_month)


def _same_day_in_year(day: date, year: int) -> date:
    """``day`` moved to ``year``; 29 February becomes 28 February in a common year."""
    if (day.month, day.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return day.replace(year=year)
