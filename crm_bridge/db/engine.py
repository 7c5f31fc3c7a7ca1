"""Engines and sessions for SQLite (one machine) and PostgreSQL (past one machine).

Nothing is built at import time: the composition root calls :func:`make_engine` with the
configured URL.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 5000
"""How long a SQLite writer waits for another one before giving up with 'database is locked'."""


def normalize_url(url: str | URL) -> URL:
    """Pick the driver: ``postgresql://`` (and ``postgres://``) means psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url``; extra keyword arguments go to :func:`sqlalchemy.create_engine`.

    SQLite gets its folder created, WAL journaling, enforced foreign keys, a busy timeout, and
    transactions that begin when SQLAlchemy begins them (so savepoints work).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        _create_sqlite_folder(parsed)
        engine = create_engine(parsed, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


class SessionFactory(sessionmaker[Session]):
    """``sessions()`` for a session that reads; ``sessions.begin()`` for a transaction that
    writes, which on SQLite begins ``IMMEDIATE``.

    A SQLite transaction that begins by reading and then writes cannot wait for another
    writer: when that writer commits first, the upgrade to a write lock fails at once with
    'database is locked' (the busy timeout does not apply; seen under the route sweep of
    ``tests/test_openapi_fuzz.py`` and with the call log writing beside a handler). Taking
    the write lock at BEGIN makes such a transaction wait its turn instead. Reads, the screen
    pops' lookups among them, stay deferred and never wait for a writer (WAL). PostgreSQL
    ignores the option.
    """

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self._writes = sessionmaker(
            engine.execution_options(sqlite_begin="IMMEDIATE"), expire_on_commit=False
        )

    def begin(self) -> AbstractContextManager[Session]:
        return self._writes.begin()


def make_session_factory(engine: Engine) -> SessionFactory:
    """Sessions whose objects stay readable after commit (they are handed to templates)."""
    return SessionFactory(engine)


def _create_sqlite_folder(url: URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    """Connection set-up for SQLite, following the SQLAlchemy pysqlite recipe.

    The sqlite3 module otherwise opens transactions on its own, only before writes, which
    breaks SAVEPOINT (used for all-or-nothing rows) and transactional DDL.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "")
        connection.exec_driver_sql("BEGIN IMMEDIATE" if mode == "IMMEDIATE" else "BEGIN")
