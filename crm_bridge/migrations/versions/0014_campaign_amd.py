"""Answering-machine detection: a dial attempt's outcome (and a target's last one) may be
``machine``.

Revision ID: 0014_campaign_amd
Revises: 0011_agent_states
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_campaign_amd"
down_revision: str | None = "0013_routing_rules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD = "('answered', 'busy', 'no_answer', 'congestion', 'failed', 'lost', 'unknown')"
NEW = "('answered', 'busy', 'no_answer', 'congestion', 'failed', 'machine', 'lost', 'unknown')"
COLUMNS = (("dial_attempts", "outcome"), ("campaign_targets", "last_outcome"))


def _check(outcomes: str) -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_{column}"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_{column}"), f"{column} IN {outcomes}")


def upgrade() -> None:
    _check(NEW)


def downgrade() -> None:
    """A machine outcome was an answered call before detection: it reads as answered."""
    op.execute("UPDATE dial_attempts SET outcome = 'answered' WHERE outcome = 'machine'")
    op.execute(
        "UPDATE campaign_targets SET last_outcome = 'answered' WHERE last_outcome = 'machine'"
    )
    _check(OLD)
