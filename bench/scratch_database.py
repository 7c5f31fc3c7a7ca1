"""Where a benchmark fills its data: a database of its own, dropped afterwards.

A benchmark given a PostgreSQL URL creates a new database beside the one the URL names (on the
same server, with the same credentials), fills and times that, and drops it at the end, so a
second run starts as empty as the first and the named database is left as it was. Without a
URL, or with a SQLite one, the URL is used as given (the benchmarks put SQLite files in a
temporary folder).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from crm_bridge.pops.relay import libpq_conninfo


@contextmanager
def scratch_database(url: str) -> Iterator[str]:
    """``url``, or for PostgreSQL the URL of a new database beside it, dropped on exit."""
    if make_url(url).get_backend_name() != "postgresql":
        yield url
        return
    name = f"callbridge_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(libpq_conninfo(url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_conninfo(url), autocommit=True) as admin:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))
