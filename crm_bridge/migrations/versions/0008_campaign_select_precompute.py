"""Campaign selection at a million customers: each department's half-month spend kept up to date.

- ``department_spend``: per half month (keyed by its first day, the 1st or the 16th), department
  and customer, the money spent (in cents, summed exactly) and how many purchases make it. A
  trigger on ``purchases`` keeps it in step with every insert, update and delete (PostgreSQL: a
  PL/pgSQL function; SQLite: three triggers), so the half month's top spenders of a department
  are read off its index instead of summing every purchase of the half month. Purchases without
  a department count for none. Filled from the purchases already there.
- ``customers``: indexes on the solar birthday's month and day (an expression index, spelled as
  the birthday rule spells them) and on the lunar birth month and day: each half of the birthday
  rule is an index search instead of reading every customer; and a partial index of the
  customers who have a tag (most have none), for the important-customers rule.

Revision ID: 0008_campaign_select_precompute
Revises: 0007_pbx_restart_end_reason
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_campaign_select_precompute"
down_revision: str | None = "0007_pbx_restart_end_reason"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "half_month, department, customer_id"
"""Every SQL text below is made of this file's constants and the trigger's NEW/OLD rows only."""


def upgrade() -> None:
    op.create_table(
        "department_spend",
        sa.Column("half_month", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("cents", sa.BigInteger(), nullable=False),
        sa.Column("purchases", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_department_spend_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "half_month", "department", "customer_id", name=op.f("pk_department_spend")
        ),
    )
    op.create_index(
        op.f("ix_department_spend_half_month_department_cents"),
        "department_spend",
        ["half_month", "department", "cents"],
    )
    op.create_index(
        op.f("ix_customers_lunar_birth_month_lunar_birth_day"),
        "customers",
        ["lunar_birth_month", "lunar_birth_day"],
    )
    birthday = sa.column("birthday")
    op.create_index(
        "ix_customers_birth_month_day",
        "customers",
        [sa.extract("month", birthday), sa.extract("day", birthday)],
    )
    op.create_index(
        "ix_customers_tagged",
        "customers",
        ["tags"],
        sqlite_where=sa.text("tags != '[]'"),
        postgresql_where=sa.text("tags <> '[]'::jsonb"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _create_postgresql_trigger()
    else:
        _create_sqlite_triggers()
    op.execute(
        f"INSERT INTO department_spend ({KEY}, cents, purchases) "  # noqa: S608 (constants only)
        f"SELECT {_half_month('purchased_on')} AS hm, department, customer_id, "
        f"SUM({_cents('amount')}), COUNT(*) FROM purchases WHERE department IS NOT NULL "
        "GROUP BY hm, department, customer_id"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER purchases_department_spend ON purchases")
        op.execute("DROP FUNCTION department_spend_follow()")
    else:
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER purchases_department_spend_{event}")
    op.drop_index("ix_customers_tagged", table_name="customers")
    op.drop_index("ix_customers_birth_month_day", table_name="customers")
    op.drop_index(op.f("ix_customers_lunar_birth_month_lunar_birth_day"), table_name="customers")
    op.drop_index(
        op.f("ix_department_spend_half_month_department_cents"), table_name="department_spend"
    )
    op.drop_table("department_spend")


def _postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def _half_month(day: str) -> str:
    """SQL for the first day (the 1st or the 16th) of the half month holding ``day``."""
    if _postgresql():
        return (
            f"(date_trunc('month', {day})::date "
            f"+ CASE WHEN extract(day FROM {day}) > 15 THEN 15 ELSE 0 END)"
        )
    return (
        f"(CASE WHEN CAST(strftime('%d', {day}) AS INTEGER) > 15 "
        f"THEN date({day}, 'start of month', '+15 days') ELSE date({day}, 'start of month') END)"
    )


def _cents(amount: str) -> str:
    if _postgresql():
        return f"round({amount} * 100)::bigint"
    return f"CAST(round({amount} * 100) AS INTEGER)"


def _add(row: str) -> str:
    """The statement adding purchase ``row`` (NEW) to its spend row."""
    return (
        f"INSERT INTO department_spend ({KEY}, cents, purchases) "
        f"SELECT {_half_month(row + '.purchased_on')}, {row}.department, {row}.customer_id, "
        f"{_cents(row + '.amount')}, 1 WHERE {row}.department IS NOT NULL "
        f"ON CONFLICT ({KEY}) DO UPDATE SET cents = department_spend.cents + excluded.cents, "
        "purchases = department_spend.purchases + 1"
    )


def _remove(row: str) -> list[str]:
    """The statements taking purchase ``row`` (OLD) out of its spend row."""
    where = (
        f"half_month = {_half_month(row + '.purchased_on')} AND department = {row}.department "
        f"AND customer_id = {row}.customer_id"
    )
    return [
        f"UPDATE department_spend SET cents = cents - {_cents(row + '.amount')}, "  # noqa: S608
        f"purchases = purchases - 1 WHERE {where}",
        f"DELETE FROM department_spend WHERE {where} AND purchases <= 0",  # noqa: S608
    ]


def _create_postgresql_trigger() -> None:
    remove = ";\n    ".join(_remove("OLD"))
    op.execute(
        "CREATE FUNCTION department_spend_follow() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.department IS NOT NULL THEN\n"
        f"    {remove};\n"
        "  END IF;\n"
        "  IF TG_OP IN ('INSERT', 'UPDATE') THEN\n"
        f"    {_add('NEW')};\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $$"
    )
    op.execute(
        "CREATE TRIGGER purchases_department_spend AFTER INSERT OR UPDATE OR DELETE ON purchases "
        "FOR EACH ROW EXECUTE FUNCTION department_spend_follow()"
    )


def _create_sqlite_triggers() -> None:
    bodies = {
        "insert": [_add("NEW")],
        "update": [*_remove("OLD"), _add("NEW")],
        "delete": _remove("OLD"),
    }
    for event, statements in bodies.items():
        body = "".join(f"{statement};\n" for statement in statements)
        op.execute(
            f"CREATE TRIGGER purchases_department_spend_{event} AFTER {event.upper()} ON purchases "
            f"BEGIN\n{body}END"
        )
