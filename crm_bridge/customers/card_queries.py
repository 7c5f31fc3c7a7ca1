"""The queries behind the customer card and the pop lookup.

Built once, with bound parameters, and run on the session's connection: building and
compiling a statement costs far more than SQLite takes to answer it.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import tzinfo
from typing import Any, TypeVar

from pydantic import BaseModel
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

from crm_bridge.db.models import (
    Call,
    Complaint,
    Customer,
    CustomerPhone,
    GuardianConsent,
    Purchase,
    VisitRecord,
)

LAST_ITEMS = 5
"""How many purchases, visits and calls a card shows, newest first."""


MAX_CARDS = 10
"""The most cards one pop shows: a number held by more customers is a switchboard."""


OPEN_COMPLAINTS_SHOWN = 10
"""How many open complaints a card lists, newest first; ``open_complaint_count`` has them all."""


OPEN_COMPLAINT_STATUSES = ("open", "in_progress")


LineT = TypeVar("LineT", bound=BaseModel)


@functools.cache
def holders_query() -> Select[Any]:
    """The ids of the customers holding each of ``:numbers``, oldest customer first (a number
    is unique per customer, so no DISTINCT)."""
    return (
        select(CustomerPhone.number_e164, CustomerPhone.customer_id)
        .where(CustomerPhone.number_e164.in_(bindparam("numbers", expanding=True)))
        .order_by(CustomerPhone.customer_id)
    )


@functools.cache
def customers_query() -> Select[Any]:
    """The customers ``:ids`` with their spend (lifetime, and after ``:year_ago`` up to
    ``:today``) and the number of their open complaints, each a correlated indexed subquery,
    and the guardian's consent recorded for them, if any (one per customer, joined).
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
            GuardianConsent.guardian.label("guardian"),
            GuardianConsent.recorded_by.label("guardian_consent_by"),
            GuardianConsent.recorded_at.label("guardian_consent_at"),
        )
        .outerjoin(GuardianConsent, GuardianConsent.customer_id == Customer.id)
        .where(Customer.id.in_(bindparam("ids", expanding=True)))
        .order_by(Customer.id)
    )


@functools.cache
def phones_query() -> Select[Any]:
    return (
        select(CustomerPhone.customer_id, CustomerPhone.number_e164, CustomerPhone.kind)
        .where(CustomerPhone.customer_id.in_(bindparam("ids", expanding=True)))
        .order_by(CustomerPhone.customer_id, CustomerPhone.id)
    )


@functools.lru_cache(maxsize=MAX_CARDS)
def purchases_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
    columns = select(
        Purchase.customer_id,
        Purchase.id,
        Purchase.purchased_on,
        Purchase.department,
        Purchase.amount,
        Purchase.items,
    )
    newest = (Purchase.purchased_on.desc(), Purchase.id.desc())
    return newest_per_customer(columns, Purchase.customer_id, newest, customers, LAST_ITEMS)


@functools.lru_cache(maxsize=MAX_CARDS)
def visits_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
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
    return newest_per_customer(columns, VisitRecord.customer_id, newest, customers, LAST_ITEMS)


@functools.lru_cache(maxsize=MAX_CARDS)
def open_complaints_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
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
    return newest_per_customer(
        columns, Complaint.customer_id, newest, customers, OPEN_COMPLAINTS_SHOWN
    )


@functools.lru_cache(maxsize=MAX_CARDS)
def calls_query(customers: int) -> Select[Any] | CompoundSelect[Any]:
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
    return newest_per_customer(columns, Call.customer_id, newest, customers, LAST_ITEMS)


def list_shape(customers: int) -> int:
    """How many customers a list query is built for: one, or :data:`MAX_CARDS` (the rest
    asked for :data:`NO_CUSTOMER`, an index lookup that finds nothing). Two shapes, not ten,
    so each is compiled once (:func:`warm_up`) rather than on the first burst of calls that
    needs it; a compile of the ten-customer union costs several milliseconds."""
    return 1 if customers == 1 else MAX_CARDS


def newest_per_customer(
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


def grouped_rows(rows: Iterable[Row[Any]]) -> defaultdict[int, list[Row[Any]]]:
    grouped: defaultdict[int, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        grouped[row.customer_id].append(row)
    return grouped


def card_lines(
    model: type[LineT], rows: list[Row[Any]], when: str, zone: tzinfo | None = None
) -> list[LineT]:
    """Rows as ``model``, newest first by ``when`` then id, times moved into ``zone``.

    The rows of one customer already come newest first from SQL, but the order of rows across a
    ``UNION ALL`` is not promised, hence the sort (of a handful of rows).
    """
    newest_first = sorted(rows, key=newest_key(when), reverse=True)
    lines = []
    for row in newest_first:
        values = row._asdict()
        if zone is not None and values[when] is not None:
            values[when] = values[when].astimezone(zone)
        lines.append(model.model_validate(values))
    return lines


def newest_key(when: str) -> Callable[[Row[Any]], tuple[bool, Any, int]]:
    """Sort key: rows with no time come last, as ``NULLS LAST`` puts them."""

    def key(row: Row[Any]) -> tuple[bool, Any, int]:
        moment = getattr(row, when)
        return (moment is not None, moment or 0, row.id)

    return key
