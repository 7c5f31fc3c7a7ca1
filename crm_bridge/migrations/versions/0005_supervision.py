"""Watch words and call flags, complaint history, KPI settings, audit log, retention.

- ``audit_log``: append-only; a trigger refuses UPDATE and DELETE (PostgreSQL: a PL/pgSQL
  function raising an exception; SQLite: ``RAISE(ABORT)``).
- ``complaint_events``: the history of each complaint (assign, escalate, resolve).
- ``supervision_settings``: run-time settings (service-level threshold, FCR window, retention).
- ``recording_deletions``: recordings whose file the retention job deleted.
- ``watch_words``, ``call_flags``: words supervisors watch for (starting with 投诉, 退款, 律师,
  12315), and where calls said them.
- ``calls``, ``customers``: indexes for the supervisors' calls page (callee; queue, agent,
  outcome and direction by date; a customer by name).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = "audit_log is append-only"
DEFAULT_WATCH_WORDS = ("投诉", "退款", "律师", "12315")
"""Complaint, refund, lawyer, and the consumer-protection hotline: the list a center starts with."""


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=True),
        sa.Column("client", sa.String(length=64), nullable=True),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
            nullable=True,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_username_at"), "audit_log", ["username", "at"])
    op.create_index(op.f("ix_audit_log_action_at"), "audit_log", ["action", "at"])
    _create_append_only_triggers()

    op.create_table(
        "complaint_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("complaint_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=64), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("follow_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "action IN ('assign', 'escalate', 'resolve')", name=op.f("ck_complaint_events_action")
        ),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaints.id"],
            name=op.f("fk_complaint_events_complaint_id_complaints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_events")),
    )
    op.create_index(
        op.f("ix_complaint_events_complaint_id_at"), "complaint_events", ["complaint_id", "at"]
    )

    op.create_table(
        "supervision_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_supervision_settings")),
    )

    op.create_table(
        "recording_deletions",
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_recording_deletions_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_recording_deletions")),
    )

    watch_words = op.create_table(
        "watch_words",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("word", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_words")),
        sa.UniqueConstraint("word", name=op.f("uq_watch_words_word")),
    )
    op.bulk_insert(
        watch_words,
        [
            {"word": word, "created_by": "callbridge", "created_at": datetime.now(UTC)}
            for word in DEFAULT_WATCH_WORDS
        ],
    )
    op.create_table(
        "call_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("word", sa.String(length=32), nullable=False),
        sa.Column("at_seconds", sa.Float(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["call_id"], ["calls.id"], name=op.f("fk_call_flags_call_id_calls"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["transcript_segments.id"],
            name=op.f("fk_call_flags_segment_id_transcript_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_flags")),
        sa.UniqueConstraint("segment_id", "word", name=op.f("uq_call_flags_segment_id_word")),
    )
    op.create_index(
        op.f("ix_call_flags_call_id_at_seconds"), "call_flags", ["call_id", "at_seconds"]
    )
    op.create_index(op.f("ix_call_flags_flagged_at"), "call_flags", ["flagged_at"])

    op.create_index(op.f("ix_calls_callee"), "calls", ["callee"])
    op.create_index(op.f("ix_calls_queue_offered_at"), "calls", ["queue", "offered_at"])
    op.create_index(op.f("ix_calls_agent_offered_at"), "calls", ["agent", "offered_at"])
    op.create_index(op.f("ix_calls_disposition_offered_at"), "calls", ["disposition", "offered_at"])
    op.create_index(op.f("ix_calls_direction_offered_at"), "calls", ["direction", "offered_at"])
    op.create_index(op.f("ix_customers_name"), "customers", ["name"])


def downgrade() -> None:
    op.drop_index(op.f("ix_customers_name"), table_name="customers")
    op.drop_index(op.f("ix_calls_direction_offered_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_disposition_offered_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_agent_offered_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_queue_offered_at"), table_name="calls")
    op.drop_index(op.f("ix_calls_callee"), table_name="calls")
    op.drop_index(op.f("ix_call_flags_flagged_at"), table_name="call_flags")
    op.drop_index(op.f("ix_call_flags_call_id_at_seconds"), table_name="call_flags")
    op.drop_table("call_flags")
    op.drop_table("watch_words")
    op.drop_table("recording_deletions")
    op.drop_table("supervision_settings")
    op.drop_index(op.f("ix_complaint_events_complaint_id_at"), table_name="complaint_events")
    op.drop_table("complaint_events")
    _drop_append_only_triggers()
    op.drop_table("audit_log")


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY}'; END; $$"
        )
        op.execute(
            "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE OR TRUNCATE "
            "ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER audit_log_no_{event.lower()} BEFORE {event} ON audit_log "
            f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY}'); END"
        )


def _drop_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_log_append_only ON audit_log")
        op.execute("DROP FUNCTION audit_log_refuse_change()")
        return
    for event in ("update", "delete"):
        op.execute(f"DROP TRIGGER audit_log_no_{event}")
