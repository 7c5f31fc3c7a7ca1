"""Outbound campaigns, their targets and dial attempts, the do-not-call list.

- ``campaigns``: who (rules), when (calling policy), how (mode, greeting), and the status.
- ``campaign_targets``: one row per customer of a campaign, with its state and next attempt.
- ``dial_attempts``: one row per Originate, unique per (campaign, customer, attempt no.) and
  committed before the Originate is sent.
- ``campaign_day_claims``: unique (customer, local day): one campaign call a day at most.
- ``do_not_call`` and ``customer_opt_outs``: kept by the admin, honoured by every campaign.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
OUTCOMES = "('answered', 'busy', 'no_answer', 'congestion', 'failed', 'lost', 'unknown')"


def _when(name: str, nullable: bool = True) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("rules", JSON, nullable=False),
        sa.Column("policy", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("greeting_file", sa.String(length=128), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        _when("created_at", nullable=False),
        _when("updated_at", nullable=False),
        _when("started_at"),
        _when("finished_at"),
        sa.CheckConstraint(
            "kind IN ('return_visit', 'birthday', 'festival', 'complaint_followup', 'promotion')",
            name=op.f("ck_campaigns_kind"),
        ),
        sa.CheckConstraint(
            "mode IN ('message', 'agent', 'preview')", name=op.f("ck_campaigns_mode")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'running', 'paused', 'stopped', 'done')",
            name=op.f("ck_campaigns_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(op.f("ix_campaigns_status"), "campaigns", ["status"])

    op.create_table(
        "campaign_targets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_outcome", sa.String(length=16), nullable=True),
        sa.Column("skip_reason", sa.String(length=32), nullable=True),
        _when("next_attempt_at"),
        _when("updated_at", nullable=False),
        sa.CheckConstraint(
            "state IN ('pending', 'dialing', 'done', 'failed', 'skipped')",
            name=op.f("ck_campaign_targets_state"),
        ),
        sa.CheckConstraint(
            f"last_outcome IN {OUTCOMES}", name=op.f("ck_campaign_targets_last_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_targets_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_campaign_targets_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_targets")),
        sa.UniqueConstraint(
            "campaign_id", "customer_id", name=op.f("uq_campaign_targets_campaign_id_customer_id")
        ),
    )
    op.create_index(
        op.f("ix_campaign_targets_campaign_id_state_next_attempt_at"),
        "campaign_targets",
        ["campaign_id", "state", "next_attempt_at"],
    )
    op.create_index(op.f("ix_campaign_targets_customer_id"), "campaign_targets", ["customer_id"])

    op.create_table(
        "dial_attempts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("number_e164", sa.String(length=20), nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("channel_id", sa.String(length=64), nullable=False),
        _when("created_at", nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reason_code", sa.String(length=8), nullable=True),
        _when("finished_at"),
        sa.CheckConstraint(f"outcome IN {OUTCOMES}", name=op.f("ck_dial_attempts_outcome")),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_dial_attempts_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_dial_attempts_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dial_attempts")),
        sa.UniqueConstraint("action_id", name=op.f("uq_dial_attempts_action_id")),
        sa.UniqueConstraint("channel_id", name=op.f("uq_dial_attempts_channel_id")),
        sa.UniqueConstraint(
            "campaign_id",
            "customer_id",
            "attempt_no",
            name=op.f("uq_dial_attempts_campaign_id_customer_id_attempt_no"),
        ),
    )
    op.create_index(
        op.f("ix_dial_attempts_campaign_id_outcome"), "dial_attempts", ["campaign_id", "outcome"]
    )
    op.create_index(op.f("ix_dial_attempts_customer_id"), "dial_attempts", ["customer_id"])

    op.create_table(
        "campaign_day_claims",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("local_day", sa.Date(), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        _when("claimed_at", nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_day_claims_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_campaign_day_claims_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_day_claims")),
        sa.UniqueConstraint(
            "customer_id", "local_day", name=op.f("uq_campaign_day_claims_customer_id_local_day")
        ),
    )
    op.create_index(
        op.f("ix_campaign_day_claims_campaign_id"), "campaign_day_claims", ["campaign_id"]
    )

    op.create_table(
        "do_not_call",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number_e164", sa.String(length=20), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("added_by", sa.String(length=64), nullable=True),
        _when("added_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_do_not_call")),
        sa.UniqueConstraint("number_e164", name=op.f("uq_do_not_call_number_e164")),
    )

    op.create_table(
        "customer_opt_outs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("note", sa.String(length=256), nullable=True),
        sa.Column("recorded_by", sa.String(length=64), nullable=True),
        _when("recorded_at", nullable=False),
        sa.CheckConstraint("source IN ('admin', 'call')", name=op.f("ck_customer_opt_outs_source")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_opt_outs_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_opt_outs")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_customer_opt_outs_customer_id")),
    )


def downgrade() -> None:
    op.drop_table("customer_opt_outs")
    op.drop_table("do_not_call")
    op.drop_index(op.f("ix_campaign_day_claims_campaign_id"), table_name="campaign_day_claims")
    op.drop_table("campaign_day_claims")
    op.drop_index(op.f("ix_dial_attempts_customer_id"), table_name="dial_attempts")
    op.drop_index(op.f("ix_dial_attempts_campaign_id_outcome"), table_name="dial_attempts")
    op.drop_table("dial_attempts")
    op.drop_index(op.f("ix_campaign_targets_customer_id"), table_name="campaign_targets")
    op.drop_index(
        op.f("ix_campaign_targets_campaign_id_state_next_attempt_at"),
        table_name="campaign_targets",
    )
    op.drop_table("campaign_targets")
    op.drop_index(op.f("ix_campaigns_status"), table_name="campaigns")
    op.drop_table("campaigns")
