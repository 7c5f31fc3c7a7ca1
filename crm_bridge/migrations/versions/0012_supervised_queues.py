"""Supervisors' queues: which queues' calls a supervisor may listen to, whisper into or barge
into (``users.supervised_queues``, a JSON list like ``users.extensions``).

Revision ID: 0012_supervised_queues
Revises: 0011_agent_states
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0012_supervised_queues"
down_revision: str | None = "0011_agent_states"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users",
        sa.Column("supervised_queues", JSON, nullable=False, server_default=sa.text("'[]'")),
    )


def downgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.drop_column("supervised_queues")
