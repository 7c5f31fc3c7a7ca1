"""Calls logged from Asterisk's own records: ``calls.reconciled``.

A call that ended while callbridge was down is logged at the next start (or reconnect) from
the CDR file Asterisk writes (``crm_bridge/calls/cdr_reconcile.py``); this column says so.

Revision ID: 0010_cdr_reconcile
Revises: 0009_live_speech
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_cdr_reconcile"
down_revision: str | None = "0009_live_speech"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(
            sa.Column("reconciled", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("reconciled")
