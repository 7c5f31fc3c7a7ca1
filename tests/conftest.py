"""Database fixtures shared by the test files.

``sqlite_url``: a SQLite file in the test's tmp_path (not yet migrated).
``pg_url``: a freshly created PostgreSQL database, dropped after the test. The server is
``CALLBRIDGE_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``); when it is
unreachable the test is skipped, or fails when ``CALLBRIDGE_REQUIRE_PG=1`` (CI).
``db_url``: both of the above, one test run each (ids ``sqlite`` and ``postgres``).
``db_sessions`` / ``sqlite_sessions``: a session factory on a migrated ``db_url`` / ``sqlite_url``.
``pbx_kit`` / ``pbx_commands``: the real Asterisk of the PBX kit (``tests/pbx_kit.py``).
``browser``: Debian's Chromium driven by Playwright; skipped where ``/usr/bin/chromium`` is missing,
or failed when ``CALLBRIDGE_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from pbx_kit import kit_bridge, pbx_commands, pbx_kit  # noqa: F401  (the real Asterisk's fixtures)
from playwright.async_api import Browser, async_playwright
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


MAX_TEST_PROCESSES = 4


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one test process more than the cores, at most :data:`MAX_TEST_PROCESSES`.
    The real-PBX tests spend most of their time waiting on real calls, so a third process on 2
    cores keeps both busy (the suite took 16.9 min on 2 processes, about 13 on 3)."""
    return min(MAX_TEST_PROCESSES, (os.cpu_count() or 1) + 1)


def _admin_url() -> str:
    return os.environ.get("CALLBRIDGE_TEST_PG_URL") or DEFAULT_PG_URL


def _libpq(url: str) -> str:
    """The URL as libpq takes it (no SQLAlchemy driver suffix)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """The PostgreSQL server to create test databases on; skip (or fail in CI) without one."""
    url = _admin_url()
    try:
        with psycopg.connect(_libpq(url), connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL unreachable at {make_url(url).render_as_string()}: {exc}"
        if os.environ.get("CALLBRIDGE_REQUIRE_PG") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return url


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'callbridge.db'}"


@pytest.fixture
def pg_url(pg_admin_url) -> Iterator[str]:
    name = f"callbridge_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(pg_admin_url), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(pg_admin_url), autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(
    params=[pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]
)
def db_url(request) -> str:
    """A fresh, empty database of each kind."""
    return request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url")


def _migrated_sessions(url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(url)
    engine = make_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def db_sessions(db_url) -> Iterator[sessionmaker[Session]]:
    yield from _migrated_sessions(db_url)


@pytest.fixture
def sqlite_sessions(sqlite_url) -> Iterator[sessionmaker[Session]]:
    yield from _migrated_sessions(sqlite_url)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is not installed"
        if os.environ.get("CALLBRIDGE_REQUIRE_BROWSER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()
