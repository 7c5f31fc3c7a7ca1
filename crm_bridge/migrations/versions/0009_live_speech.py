"""Watch words heard live: ``live_speech_alerts``, one row per word said, by Linkedid.

Revision ID: 0009_live_speech
Revises: 0008_campaign_select_precompute
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_live_speech"
down_revision: str | None = "0008_campaign_select_precompute"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "live_speech_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("side", sa.String(length=16), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("word", sa.String(length=32), nullable=False),
        sa.Column("said_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("call_second", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("alerted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_live_speech_alerts")),
    )
    op.create_index(
        op.f("ix_live_speech_alerts_linkedid_said_at"),
        "live_speech_alerts",
        ["linkedid", "said_at"],
    )
    op.create_index(op.f("ix_live_speech_alerts_said_at"), "live_speech_alerts", ["said_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_live_speech_alerts_said_at"), table_name="live_speech_alerts")
    op.drop_index(op.f("ix_live_speech_alerts_linkedid_said_at"), table_name="live_speech_alerts")
    op.drop_table("live_speech_alerts")
