"""What differs between the two databases the service runs on, for statements both sides of a
feature build: the current time (the database's clock on PostgreSQL, where workers on several
machines share it; this machine's on SQLite) and the ``INSERT … ON CONFLICT`` construct."""

from __future__ import annotations

from typing import Any

from sqlalchemy import DateTime, func
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_bridge.db.models import utcnow


def database_now(session: Session) -> Any:
    """The current time: the database's on PostgreSQL, this machine's on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return func.statement_timestamp(type_=DateTime(timezone=True))
    return utcnow()


def dialect_insert(session: Session) -> Any:
    """``insert`` of the session's dialect, which offers ``on_conflict_do_nothing/update``."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
