"""A user's profile: the name shown for them (``display_name``, set by an admin), and the
language they chose for the pages (``language``: zh-CN or en; empty: the browser's).

Revision ID: 0019_user_profile
Revises: 0018_call_survey
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_user_profile"
down_revision: str | None = "0018_call_survey"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("display_name", sa.String(64), nullable=True))
        batch.add_column(sa.Column("language", sa.String(8), nullable=True))
        batch.create_check_constraint(op.f("ck_users_language"), "language IN ('zh-CN', 'en')")


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_language"), type_="check")
        batch.drop_column("language")
        batch.drop_column("display_name")
