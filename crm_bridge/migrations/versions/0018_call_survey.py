"""The satisfaction survey: a call's score, the survey on or off per queue, and the uploaded
prompts.

Revision ID: 0018_call_survey
Revises: 0017_guardian_consent
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_call_survey"
down_revision: str | None = "0017_guardian_consent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("survey_score", sa.Integer(), nullable=True))
        batch.create_check_constraint(op.f("ck_calls_survey_score"), "survey_score BETWEEN 1 AND 5")
    with op.batch_alter_table("queue_settings") as batch:
        batch.add_column(
            sa.Column("survey", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "survey_prompts",
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("file_name", sa.String(64), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("uploaded_by", sa.String(64), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "kind IN ('ask', 'invalid', 'thanks')", name=op.f("ck_survey_prompts_kind")
        ),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_survey_prompts")),
    )


def downgrade() -> None:
    op.drop_table("survey_prompts")
    with op.batch_alter_table("queue_settings") as batch:
        batch.drop_column("survey")
    with op.batch_alter_table("calls") as batch:
        batch.drop_constraint(op.f("ck_calls_survey_score"), type_="check")
        batch.drop_column("survey_score")
