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

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field
from sqlalchemy.orm import Session

from crm_bridge.accounts.people import AgentNames, agent_names
from crm_bridge.customers.birthdays import (
    BirthdayKind,
    _same_day_in_year,
    age_on,
    birthday_label,
    is_birthday_today,
)
from crm_bridge.customers.card_queries import (
    MAX_CARDS,
    calls_query,
    card_lines,
    customers_query,
    grouped_rows,
    holders_query,
    list_shape,
    open_complaints_query,
    phones_query,
    purchases_query,
    visits_query,
)
from crm_bridge.customers.numbers import PhoneKind, PhoneNumber, normalize_phone

NO_CUSTOMER = 0
"""An id no customer has (ids start at 1): what the unused parts of a list query ask for."""
CENT = Decimal("0.01")

LookupKind = Literal["known", "unknown", "multiple", "withheld", "internal"]


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
    """Who took the call as a person reads it: the name with the extension beside,
    ``王小明 (1001)``, or the extension alone when no user holds it
    (:mod:`crm_bridge.accounts.people`)."""
    agent_extension: str | None = None
    """The extension that took the call (``calls.agent``)."""
    disposition: str | None
    talk_seconds: float | None


class GuardianConsentLine(BaseModel):
    """A guardian's consent to marketing calls for a minor (who gave it, who recorded it)."""

    guardian: str
    recorded_by: str
    recorded_at: datetime


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
    guardian_consent: GuardianConsentLine | None = None


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
        for row in session.connection().execute(holders_query(), {"numbers": e164s}):
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
        customers_query(), {"ids": ids, "today": today, "year_ago": year_ago}
    ).all()
    phones = grouped_rows(connection.execute(phones_query(), {"ids": ids}))
    shape = list_shape(len(ids))
    each = {f"customer_{index}": customer_id for index, customer_id in enumerate(ids)}
    each |= {f"customer_{index}": NO_CUSTOMER for index in range(len(ids), shape)}
    purchases = grouped_rows(connection.execute(purchases_query(shape), each))
    visits = grouped_rows(connection.execute(visits_query(shape), each))
    complaints = grouped_rows(connection.execute(open_complaints_query(shape), each))
    calls = grouped_rows(connection.execute(calls_query(shape), each))
    names = _agent_names(session, calls)
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
                last_purchases=card_lines(PurchaseLine, purchases[customer.id], "purchased_on"),
                last_visits=card_lines(VisitLine, visits[customer.id], "visited_at", zone),
                open_complaints=card_lines(
                    ComplaintLine, complaints[customer.id], "received_at", zone
                ),
                open_complaint_count=customer.open_complaint_count,
                last_calls=_named(
                    card_lines(CallLine, calls[customer.id], "offered_at", zone), names
                ),
                tags=list(customer.tags or []),
                consent_to_calls=customer.consent_to_calls,
                guardian_consent=_guardian_consent(customer, zone),
            )
        )
    return cards


def _guardian_consent(customer, zone: tzinfo) -> GuardianConsentLine | None:
    if customer.guardian is None:
        return None
    return GuardianConsentLine(
        guardian=customer.guardian,
        recorded_by=customer.guardian_consent_by,
        recorded_at=customer.guardian_consent_at.astimezone(zone),
    )


def _agent_names(session: Session, calls: dict[int, list[Any]]) -> AgentNames | None:
    """The names of the agents the cards' last calls name (one read of the users table,
    only when a last call has an agent)."""
    if any(row.agent for rows in calls.values() for row in rows):
        return agent_names(session)
    return None


def _named(lines: list[CallLine], names: AgentNames | None) -> list[CallLine]:
    for line in lines:
        line.agent_extension = line.agent
        if names is not None and line.agent:
            line.agent = names.label(line.agent)
    return lines


def warm_up(session: Session) -> None:
    """Compile the card queries of both shapes now (at start-up) instead of on the first
    calls that need them."""
    today = date.today()
    for shape in {1, MAX_CARDS}:
        build_cards(session, list(range(-shape, 0)), today=today, zone=UTC)
