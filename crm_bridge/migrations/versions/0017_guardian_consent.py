"""Minors and marketing calls; the preview dialer's own call.

- ``guardian_consents``: a guardian's consent to marketing calls for a customer under 18 (or
  tagged as a child), who recorded it and when. Without one such a customer is left out of
  marketing campaigns.
- ``customers``: an index on the solar date of birth, so the selection finds the minors among
  a million customers with one range search.
- ``dial_attempts.placed_by``: the agent who placed a preview call, whose page stays on that
  customer until the call is settled.

Revision ID: 0017_guardian_consent
Revises: 0016_complaint_work_scorecards
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_guardian_consent"
down_revision: str | None = "0016_complaint_work_scorecards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "guardian_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("guardian", sa.String(length=64), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_guardian_consents_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guardian_consents")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_guardian_consents_customer_id")),
    )
    op.create_index(op.f("ix_customers_birthday"), "customers", ["birthday"])
    with op.batch_alter_table("dial_attempts") as batch:
        batch.add_column(sa.Column("placed_by", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_dial_attempts_placed_by"), ["placed_by"])


def downgrade() -> None:
    with op.batch_alter_table("dial_attempts") as batch:
        batch.drop_index(batch.f("ix_dial_attempts_placed_by"))
        batch.drop_column("placed_by")
    op.drop_index(op.f("ix_customers_birthday"), table_name="customers")
    op.drop_table("guardian_consents")
