"""The agent's work on a call (call_notes), complaints taken on a call, two wider indexes.

- ``call_notes``: customer confirmed, wrap-up code and note per Linkedid, saved while the call
  is still ringing or talking (so no foreign key to ``calls``, written when the call ends).
- ``complaints.linkedid``: the call a complaint was taken on, until its ``call_id`` is known.
- ``calls (customer_id, offered_at)`` replaces ``calls (customer_id)``: a customer's last calls
  newest first from the index alone.
- ``customer_phones (number_e164, customer_id)`` replaces ``(number_e164)``: the customers of
  a number from the index alone.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("wrapup_code", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("agent_username", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "wrapup_code IN ('inquiry', 'order', 'after_sales', 'complaint', 'appointment', "
            "'return_visit', 'other')",
            name=op.f("ck_call_notes_wrapup_code"),
        ),
        sa.CheckConstraint(
            "note IS NULL OR length(note) <= 2000", name=op.f("ck_call_notes_note_length")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_call_notes_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_notes")),
        sa.UniqueConstraint("linkedid", name=op.f("uq_call_notes_linkedid")),
    )
    op.create_index(op.f("ix_call_notes_customer_id"), "call_notes", ["customer_id"])

    op.add_column("complaints", sa.Column("linkedid", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_complaints_linkedid"), "complaints", ["linkedid"])

    op.create_index(op.f("ix_calls_customer_id_offered_at"), "calls", ["customer_id", "offered_at"])
    op.drop_index(op.f("ix_calls_customer_id"), table_name="calls")
    op.create_index(
        op.f("ix_customer_phones_number_e164_customer_id"),
        "customer_phones",
        ["number_e164", "customer_id"],
    )
    op.drop_index(op.f("ix_customer_phones_number_e164"), table_name="customer_phones")


def downgrade() -> None:
    op.create_index(op.f("ix_customer_phones_number_e164"), "customer_phones", ["number_e164"])
    op.drop_index(op.f("ix_customer_phones_number_e164_customer_id"), table_name="customer_phones")
    op.create_index(op.f("ix_calls_customer_id"), "calls", ["customer_id"])
    op.drop_index(op.f("ix_calls_customer_id_offered_at"), table_name="calls")

    op.drop_index(op.f("ix_complaints_linkedid"), table_name="complaints")
    with op.batch_alter_table("complaints") as batch:
        batch.drop_column("linkedid")

    op.drop_table("call_notes")
