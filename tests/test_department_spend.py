"""The half-month spend per department that the database keeps (``department_spend``), and the
top spenders read off it, on SQLite and PostgreSQL.

The oracle is the ranking straight from ``purchases``: every purchase of the half month summed
per department and customer and ranked in SQL, what the rule ran before the aggregate existed.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select, update

from crm_bridge.campaigns.rules import last_half_month, top_spender_ids
from crm_bridge.db.models import Customer, DepartmentSpend, Purchase

DEPARTMENTS = ["家电", "服装", "食品"]


def ranked_from_purchases(session, first: date, last: date, top_n: int) -> set[int]:
    spent = func.sum(Purchase.amount)
    rank = func.row_number().over(
        partition_by=Purchase.department, order_by=(spent.desc(), Purchase.customer_id)
    )
    ranked = (
        select(Purchase.customer_id.label("customer_id"), rank.label("rank"))
        .where(Purchase.purchased_on.between(first, last), Purchase.department.is_not(None))
        .group_by(Purchase.department, Purchase.customer_id)
        .subquery()
    )
    return set(session.scalars(select(ranked.c.customer_id).where(ranked.c.rank <= top_n)))


def spend_rows(session) -> dict[tuple[date, str, int], tuple[int, int]]:
    return {
        (row.half_month, row.department, row.customer_id): (row.cents, row.purchases)
        for row in session.scalars(select(DepartmentSpend))
    }


def add_customers(session, count: int) -> list[int]:
    customers = [Customer(card_no=f"S{n:05d}", name=f"客户{n}") for n in range(count)]
    session.add_all(customers)
    session.flush()
    return [customer.id for customer in customers]


def test_each_purchase_written_changed_or_deleted_moves_its_half_months_sum(db_sessions):
    with db_sessions.begin() as session:
        a, b = add_customers(session, 2)
        first = Purchase(customer_id=a, purchased_on=date(2026, 11, 15), department="家电",
                         amount=Decimal("100.10"))  # fmt: skip
        second = Purchase(customer_id=a, purchased_on=date(2026, 11, 1), department="家电",
                          amount=Decimal("0.25"))  # fmt: skip
        later = Purchase(customer_id=a, purchased_on=date(2026, 11, 16), department="家电",
                         amount=Decimal("7"))  # fmt: skip
        nowhere = Purchase(customer_id=b, purchased_on=date(2026, 11, 2), department=None,
                           amount=Decimal("5"))  # fmt: skip
        session.add_all([first, second, later, nowhere])
    with db_sessions() as session:
        assert spend_rows(session) == {
            (date(2026, 11, 1), "家电", a): (10035, 2),
            (date(2026, 11, 16), "家电", a): (700, 1),
        }
    with db_sessions.begin() as session:
        session.execute(update(Purchase).where(Purchase.id == later.id).values(
            customer_id=b, department="服装", amount=Decimal("8.50")))  # fmt: skip
        session.execute(update(Purchase).where(Purchase.id == nowhere.id).values(department="食品"))
        session.execute(delete(Purchase).where(Purchase.id == second.id))
    with db_sessions() as session:
        assert spend_rows(session) == {
            (date(2026, 11, 1), "家电", a): (10010, 1),
            (date(2026, 11, 16), "服装", b): (850, 1),
            (date(2026, 11, 1), "食品", b): (500, 1),
        }
    with db_sessions.begin() as session:
        session.execute(delete(Purchase).where(Purchase.id == first.id))
        session.execute(delete(Customer).where(Customer.id == b))
    with db_sessions() as session:
        assert spend_rows(session) == {}


def test_top_spenders_from_the_sums_are_those_ranked_from_every_purchase(db_sessions):
    rng = random.Random(19)
    today = date(2026, 12, 3)
    first, last = last_half_month(today)
    with db_sessions.begin() as session:
        ids = add_customers(session, 60)
        session.add_all(
            Purchase(
                customer_id=rng.choice(ids),
                purchased_on=first + timedelta(days=rng.randint(-5, 20)),
                department=rng.choice([*DEPARTMENTS, None]),
                # few distinct amounts, so equal sums (ties) happen
                amount=Decimal(rng.choice(["10", "20", "20.5", "30", "-5"])),
            )
            for _ in range(400)
        )
    with db_sessions() as session:
        for top_n in (1, 3, 10, 100):
            expected = ranked_from_purchases(session, first, last, top_n)
            assert top_spender_ids(session, first, top_n) == expected, top_n
        assert top_spender_ids(session, date(2025, 1, 1), 5) == set()
