"""Recording checks, transcription jobs, transcripts and their search index.

- ``recordings``: the per-direction files (``agent_path``, ``customer_path``) and the status
  ``unreadable`` (a file whose WAV header cannot be read).
- ``transcription_jobs``: the queue workers claim from under a lease.
- ``transcript_segments``: what was said, side by side, with word times.
- Search over ``transcript_segments.text``. Chinese has no spaces between words, so both
  indexes work on character trigrams: on SQLite an FTS5 table with the trigram tokenizer
  (SQLite 3.34+), external content kept in step by triggers; on PostgreSQL a pg_trgm GIN
  index (serves ILIKE '%…%'). Neither can be declared on the models, see
  ``crm_bridge.db.models.in_model_schema``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_STATUSES = "status IN ('ok', 'missing', 'empty')"
NEW_STATUSES = "status IN ('ok', 'missing', 'empty', 'unreadable')"

SQLITE_SEARCH = (
    "CREATE VIRTUAL TABLE transcript_fts USING fts5("
    "text, content='transcript_segments', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER transcript_segments_fts_insert AFTER INSERT ON transcript_segments BEGIN"
    " INSERT INTO transcript_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER transcript_segments_fts_delete AFTER DELETE ON transcript_segments BEGIN"
    " INSERT INTO transcript_fts(transcript_fts, rowid, text)"
    " VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER transcript_segments_fts_update AFTER UPDATE OF text ON transcript_segments"
    " BEGIN"
    " INSERT INTO transcript_fts(transcript_fts, rowid, text)"
    " VALUES ('delete', old.id, old.text);"
    " INSERT INTO transcript_fts(rowid, text) VALUES (new.id, new.text); END",
)
POSTGRESQL_SEARCH = (
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX ix_transcript_segments_text_trgm ON transcript_segments"
    " USING gin (text gin_trgm_ops)",
)


def _utc() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _json_list() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("recordings") as batch:
        batch.add_column(sa.Column("agent_path", sa.String(length=512), nullable=True))
        batch.add_column(sa.Column("customer_path", sa.String(length=512), nullable=True))
        batch.alter_column("status", existing_type=sa.String(length=8), type_=sa.String(length=10))
        batch.drop_constraint(op.f("ck_recordings_status"), type_="check")
        batch.create_check_constraint(op.f("ck_recordings_status"), NEW_STATUSES)

    op.create_table(
        "transcription_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _utc(), nullable=False),
        sa.Column("lease_expires_at", _utc(), nullable=True),
        sa.Column("worker", sa.String(length=128), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')",
            name=op.f("ck_transcription_jobs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_transcription_jobs_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcription_jobs")),
        sa.UniqueConstraint("recording_id", name=op.f("uq_transcription_jobs_recording_id")),
    )
    op.create_index(
        op.f("ix_transcription_jobs_status_not_before"),
        "transcription_jobs",
        ["status", "not_before"],
    )
    op.create_index(
        op.f("ix_transcription_jobs_status_lease_expires_at"),
        "transcription_jobs",
        ["status", "lease_expires_at"],
    )

    op.create_table(
        "transcript_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("recording_id", sa.Integer(), nullable=False),
        sa.Column("call_id", sa.Integer(), nullable=False),
        sa.Column("speaker", sa.String(length=8), nullable=False),
        sa.Column("start_seconds", sa.Float(), nullable=False),
        sa.Column("end_seconds", sa.Float(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("words", _json_list(), nullable=False),
        sa.CheckConstraint(
            "speaker IN ('agent', 'customer', 'mixed')",
            name=op.f("ck_transcript_segments_speaker"),
        ),
        sa.ForeignKeyConstraint(
            ["call_id"],
            ["calls.id"],
            name=op.f("fk_transcript_segments_call_id_calls"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["recording_id"],
            ["recordings.id"],
            name=op.f("fk_transcript_segments_recording_id_recordings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transcript_segments")),
    )
    op.create_index(
        op.f("ix_transcript_segments_recording_id_start_seconds"),
        "transcript_segments",
        ["recording_id", "start_seconds"],
    )
    op.create_index(
        op.f("ix_transcript_segments_call_id_start_seconds"),
        "transcript_segments",
        ["call_id", "start_seconds"],
    )
    dialect = op.get_bind().dialect.name
    for statement in SQLITE_SEARCH if dialect == "sqlite" else POSTGRESQL_SEARCH:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER transcript_segments_fts_{trigger}")
        op.execute("DROP TABLE transcript_fts")
    # pg_trgm stays: other schemas on the server may use it. Its index goes with the table.
    op.drop_table("transcript_segments")
    op.drop_table("transcription_jobs")

    op.execute("UPDATE recordings SET status = NULL WHERE status = 'unreadable'")  # unchecked
    with op.batch_alter_table("recordings") as batch:
        batch.drop_constraint(op.f("ck_recordings_status"), type_="check")
        batch.create_check_constraint(op.f("ck_recordings_status"), OLD_STATUSES)
        batch.alter_column("status", existing_type=sa.String(length=10), type_=sa.String(length=8))
        batch.drop_column("customer_path")
        batch.drop_column("agent_path")
