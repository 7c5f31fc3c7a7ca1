"""The agent's day: the agents each call rang (an agent's missed calls), and who took each
missed or abandoned call to call back.

Revision ID: 0015_agent_day
Revises: 0014_campaign_amd
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0015_agent_day"
down_revision: str | None = "0014_campaign_amd"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("agents_rung", JSON, nullable=False, server_default=sa.text("'[]'"))
        )
    op.create_table(
        "callback_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("taken_by", sa.String(length=64), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("called_back_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_callback_claims_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_claims")),
        sa.UniqueConstraint("call_id", name=op.f("uq_callback_claims_call_id")),
    )


def downgrade() -> None:
    op.drop_table("callback_claims")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("agents_rung")
