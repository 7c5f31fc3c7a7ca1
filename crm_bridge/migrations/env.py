"""Alembic environment for callbridge.

Used two ways: by :func:`crm_bridge.db.migrate.upgrade`, which hands over an open connection
in ``config.attributes["connection"]``; and by developers running ``alembic`` at the repository
root (``alembic.ini``), where the URL comes from ``-x url=…``, then ``CALLBRIDGE_DATABASE_URL``,
then ``sqlalchemy.url`` in the ini file.
"""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from crm_bridge.db.engine import make_engine, normalize_url
from crm_bridge.db.models import Base, in_model_schema

MIGRATION_LOCK_KEY = 0x63616C6C
"""PostgreSQL advisory lock held while migrating, so instances starting together take turns."""

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    return (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("CALLBRIDGE_DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
        or ""
    )


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        include_name=in_model_schema,  # the full-text search structures are not in the models
        render_as_batch=connection.dialect.name == "sqlite",
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        context.run_migrations()


def run_offline() -> None:
    """``alembic upgrade --sql``: print the SQL instead of running it."""
    context.configure(
        url=normalize_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

if context.is_offline_mode():
    run_offline()
else:
    run_online()
