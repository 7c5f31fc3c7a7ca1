"""Calls cut by a PBX shutdown or restart: ``calls.end_reason`` may be ``pbx_restart``.

Revision ID: 0007_pbx_restart_end_reason
Revises: 0006_revocable_sessions
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_pbx_restart_end_reason"
down_revision: str | None = "0006_revocable_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_REASONS = "end_reason IN ('hangup', 'lost_while_disconnected')"
NEW_REASONS = "end_reason IN ('hangup', 'lost_while_disconnected', 'pbx_restart')"


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_constraint(op.f("ck_calls_end_reason"), type_="check")
        batch.create_check_constraint(op.f("ck_calls_end_reason"), NEW_REASONS)


def downgrade() -> None:
    op.execute("UPDATE calls SET end_reason = 'hangup' WHERE end_reason = 'pbx_restart'")
    with op.batch_alter_table("calls") as batch:
        batch.drop_constraint(op.f("ck_calls_end_reason"), type_="check")
        batch.create_check_constraint(op.f("ck_calls_end_reason"), OLD_REASONS)
