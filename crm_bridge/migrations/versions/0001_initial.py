"""The customer archive, the call log, recordings and users.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json_list() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _id() -> sa.Column:
    return sa.Column("id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "customers",
        _id(),
        sa.Column("card_no", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("gender", sa.String(length=1), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("lunar_birthday", sa.Boolean(), nullable=False),
        sa.Column("lunar_birth_month", sa.SmallInteger(), nullable=True),
        sa.Column("lunar_birth_day", sa.SmallInteger(), nullable=True),
        sa.Column("employer", sa.String(length=128), nullable=True),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("vip_level", sa.String(length=16), nullable=True),
        sa.Column("tags", _json_list(), nullable=False),
        sa.Column("consent_to_calls", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.CheckConstraint("gender IN ('M', 'F')", name=op.f("ck_customers_gender")),
        sa.CheckConstraint(
            "NOT lunar_birthday OR (lunar_birth_month IS NOT NULL AND lunar_birth_day IS NOT NULL)",
            name=op.f("ck_customers_lunar_birthday_complete"),
        ),
        sa.CheckConstraint(
            "lunar_birth_day IS NULL OR lunar_birth_day BETWEEN 1 AND 30",
            name=op.f("ck_customers_lunar_birth_day"),
        ),
        sa.CheckConstraint(
            "lunar_birth_month IS NULL OR lunar_birth_month BETWEEN 1 AND 12",
            name=op.f("ck_customers_lunar_birth_month"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("card_no", name=op.f("uq_customers_card_no")),
    )
    op.create_table(
        "users",
        _id(),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("extensions", _json_list(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "role IN ('agent', 'supervisor', 'scheduler', 'admin')", name=op.f("ck_users_role")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("username", name=op.f("uq_users_username")),
    )
    op.create_table(
        "calls",
        _id(),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=True),
        sa.Column("caller_name", sa.String(length=128), nullable=True),
        sa.Column("callee", sa.String(length=64), nullable=True),
        sa.Column("queue", sa.String(length=64), nullable=True),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("agent_interface", sa.String(length=128), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        sa.Column("hangup_cause", sa.Integer(), nullable=True),
        sa.Column("hangup_cause_text", sa.String(length=64), nullable=True),
        sa.Column("offered_at", _utc(), nullable=True),
        sa.Column("answered_at", _utc(), nullable=True),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("wait_seconds", sa.Float(), nullable=True),
        sa.Column("talk_seconds", sa.Float(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("campaign", sa.String(length=64), nullable=True),
        sa.Column("originate_action_id", sa.String(length=64), nullable=True),
        sa.Column("transferred_to", sa.String(length=64), nullable=True),
        sa.Column("end_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint("direction IN ('inbound', 'outbound')", name=op.f("ck_calls_direction")),
        sa.CheckConstraint(
            "disposition IN ('answered', 'abandoned', 'busy', 'no_answer', 'failed')",
            name=op.f("ck_calls_disposition"),
        ),
        sa.CheckConstraint(
            "end_reason IN ('hangup', 'lost_while_disconnected')", name=op.f("ck_calls_end_reason")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_calls_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calls")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_calls_linkedid")),
    )
    for column in ("agent", "caller", "customer_id", "disposition", "ended_at", "offered_at"):
        op.create_index(op.f(f"ix_calls_{column}"), "calls", [column])

    op.create_table(
        "customer_phones",
        _id(),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("number_e164", sa.String(length=20), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.CheckConstraint(
            "kind IN ('mobile', 'home', 'work', 'other')", name=op.f("ck_customer_phones_kind")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_phones_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_phones")),
        sa.UniqueConstraint(
            "customer_id", "number_e164", name=op.f("uq_customer_phones_customer_id_number_e164")
        ),
    )
    op.create_index(op.f("ix_customer_phones_number_e164"), "customer_phones", ["number_e164"])

    op.create_table(
        "purchases",
        _id(),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("purchased_on", sa.Date(), nullable=False),
        sa.Column("department", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("items", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_purchases_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchases")),
    )
    op.create_index(
        op.f("ix_purchases_customer_id_purchased_on"), "purchases", ["customer_id", "purchased_on"]
    )
    op.create_index(
        op.f("ix_purchases_department_purchased_on"), "purchases", ["department", "purchased_on"]
    )

    op.create_table(
        "complaints",
        _id(),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("handler", sa.String(length=64), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("escalated_to", sa.String(length=64), nullable=True),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'in_progress', 'resolved', 'closed')",
            name=op.f("ck_complaints_status"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_complaints_call_id_calls"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_complaints_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaints")),
    )
    op.create_index(op.f("ix_complaints_call_id"), "complaints", ["call_id"])
    op.create_index(
        op.f("ix_complaints_customer_id_received_at"), "complaints", ["customer_id", "received_at"]
    )
    op.create_index(
        op.f("ix_complaints_status_received_at"), "complaints", ["status", "received_at"]
    )

    op.create_table(
        "recordings",
        _id(),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("path", sa.String(length=512), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.CheckConstraint(
            "status IN ('ok', 'missing', 'empty')", name=op.f("ck_recordings_status")
        ),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_recordings_call_id_calls"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("call_id", "path", name=op.f("uq_recordings_call_id_path")),
    )

    op.create_table(
        "visit_records",
        _id(),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("visited_at", _utc(), nullable=False),
        sa.Column("place", sa.String(length=128), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("opinions", sa.Text(), nullable=True),
        sa.Column("suggestions", sa.Text(), nullable=True),
        sa.Column("visited_by", sa.String(length=64), nullable=True),
        sa.Column("call_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_visit_records_call_id_calls"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_visit_records_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visit_records")),
    )
    op.create_index(op.f("ix_visit_records_call_id"), "visit_records", ["call_id"])
    op.create_index(
        op.f("ix_visit_records_customer_id_visited_at"),
        "visit_records",
        ["customer_id", "visited_at"],
    )


def downgrade() -> None:
    for table in (
        "visit_records",
        "recordings",
        "complaints",
        "purchases",
        "customer_phones",
        "calls",
        "users",
        "customers",
    ):
        op.drop_table(table)
