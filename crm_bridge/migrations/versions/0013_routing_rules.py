"""Routing by customer value: the admin's rules (VIP levels and their queue priority, the
high-value threshold, the account manager's ring time, the complaint queue) and each
customer's account manager.

Revision ID: 0013_routing_rules
Revises: 0011_agent_states
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_routing_rules"
down_revision: str | None = "0012_supervised_queues"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "routing_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("high_value_cents", sa.BigInteger(), nullable=True),
        sa.Column("high_value_priority", sa.Integer(), nullable=False),
        sa.Column("manager_ring_seconds", sa.Integer(), nullable=False),
        sa.Column("complaint_queue", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_settings")),
    )
    op.create_table(
        "routing_tiers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_tiers")),
        sa.UniqueConstraint("tier", name=op.f("uq_routing_tiers_tier")),
    )
    op.create_table(
        "account_managers",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("extension", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_account_managers_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_account_managers")),
    )


def downgrade() -> None:
    op.drop_table("account_managers")
    op.drop_table("routing_tiers")
    op.drop_table("routing_settings")
