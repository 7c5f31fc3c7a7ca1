"""Agent states: state history, pause reasons, per-queue settings (after-call work, penalty,
service-level target, wallboard thresholds).

Revision ID: 0011_agent_states
Revises: 0010_cdr_reconcile
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0011_agent_states"
down_revision: str | None = "0010_cdr_reconcile"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_REASONS = ("小休", "用餐", "培训", "会议")


def upgrade() -> None:
    op.create_table(
        "agent_state_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("queues", JSON, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agent_state_changes")),
    )
    op.create_index(op.f("ix_agent_state_changes_agent_at"), "agent_state_changes", ["agent", "at"])
    op.create_index(op.f("ix_agent_state_changes_at"), "agent_state_changes", ["at"])
    reasons = op.create_table(
        "pause_reasons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pause_reasons")),
        sa.UniqueConstraint("label", name=op.f("uq_pause_reasons_label")),
    )
    op.bulk_insert(reasons, [{"label": label, "active": True} for label in DEFAULT_REASONS])
    op.create_table(
        "queue_settings",
        sa.Column("queue", sa.String(64), nullable=False),
        sa.Column("after_call_seconds", sa.Integer(), nullable=False),
        sa.Column("penalty", sa.Integer(), nullable=False),
        sa.Column("service_level_seconds", sa.Integer(), nullable=False),
        sa.Column("waiting_alert", sa.Integer(), nullable=False),
        sa.Column("longest_wait_alert_seconds", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("queue", name=op.f("pk_queue_settings")),
    )


def downgrade() -> None:
    op.drop_table("queue_settings")
    op.drop_table("pause_reasons")
    op.drop_table("agent_state_changes")
