"""Revocable sessions: ``users.session_generation``, which every session cookie must match.

Signing out, a new password, deactivation and an admin's "sign out everywhere" add one to it,
so every cookie issued before stops working at once, on every instance
(``crm_bridge/accounts/auth.py``).

Revision ID: 0006_revocable_sessions
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_revocable_sessions"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("session_generation", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_generation")
