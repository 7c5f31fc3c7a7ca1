"""The supervisor's work: a complaint's category and severity, who assigned and escalated it
and when; the quality-review scorecards of calls (``quality_reviews``).

Revision ID: 0016_complaint_work_scorecards
Revises: 0015_agent_day
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0016_complaint_work_scorecards"
down_revision: str | None = "0015_agent_day"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CATEGORIES = "('product', 'service', 'delivery', 'price', 'other')"
SEVERITIES = "('normal', 'serious', 'urgent')"
WHO_AND_WHEN = ("assigned_by", "assigned_at", "escalated_by", "escalated_at")


def upgrade() -> None:
    with op.batch_alter_table("complaints") as batch:
        batch.add_column(sa.Column("category", sa.String(16), nullable=True))
        batch.add_column(
            sa.Column("severity", sa.String(16), nullable=False, server_default="normal")
        )
        batch.add_column(sa.Column("assigned_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("escalated_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("escalated_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_check_constraint(op.f("ck_complaints_category"), f"category IN {CATEGORIES}")
        batch.create_check_constraint(op.f("ck_complaints_severity"), f"severity IN {SEVERITIES}")
    op.create_table(
        "quality_reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("scores", JSON, nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("total >= 0", name=op.f("ck_quality_reviews_total")),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_quality_reviews_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quality_reviews")),
        sa.UniqueConstraint(
            "call_id", "reviewer", name=op.f("uq_quality_reviews_call_id_reviewer")
        ),
    )
    op.create_index(op.f("ix_quality_reviews_reviewer"), "quality_reviews", ["reviewer"])


def downgrade() -> None:
    op.drop_index(op.f("ix_quality_reviews_reviewer"), table_name="quality_reviews")
    op.drop_table("quality_reviews")
    with op.batch_alter_table("complaints") as batch:
        batch.drop_constraint(op.f("ck_complaints_severity"), type_="check")
        batch.drop_constraint(op.f("ck_complaints_category"), type_="check")
        for column in (*WHO_AND_WHEN, "severity", "category"):
            batch.drop_column(column)
