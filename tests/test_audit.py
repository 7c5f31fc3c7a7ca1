"""The audit log: written by ``record``, read by admins, refused to everyone for edits, and
append-only in the database itself (SQLite and PostgreSQL triggers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DatabaseError
from test_auth import every_route
from test_pops import CHEAP_ARGON2, PASSWORD, Site, hashed, running_site

from crm_bridge.accounts import users
from crm_bridge.accounts.audit import AuditFilter, read_entries, record
from crm_bridge.db.models import AuditEntry, User


@dataclass(frozen=True)
class Someone:
    username: str
    role: str


LIN = Someone("lin", "supervisor")


def write_three(sessions) -> None:
    with sessions.begin() as session:
        record(session, user=LIN, action="play", subject=("recording", 7), client="10.0.0.5")
        record(
            session,
            user=LIN,
            action="export",
            subject=("kpis", None),
            client="10.0.0.5",
            details={"table": "by_day", "format": "xlsx"},
        )
        record(session, user=Someone("root", "admin"), action="download",
               subject=("recording", 8), client=None)  # fmt: skip


def test_entries_are_kept_and_read_newest_first_with_filters(db_sessions):
    write_three(db_sessions)
    with db_sessions() as session:
        everything, more = read_entries(session, AuditFilter())
        assert [e.action for e in everything] == ["download", "export", "play"]
        assert more is None
        export = everything[1]
        assert (export.username, export.role, export.subject_type, export.subject_id) == (
            "lin", "supervisor", "kpis", None)  # fmt: skip
        assert export.details == {"table": "by_day", "format": "xlsx"}
        assert export.at.tzinfo is not None
        lins, _ = read_entries(session, AuditFilter(username="lin"))
        assert [e.action for e in lins] == ["export", "play"]
        first, before = read_entries(session, AuditFilter(), limit=2)
        assert len(first) == 2 and before == first[-1].id
        rest, more = read_entries(session, AuditFilter(), before_id=before, limit=2)
        assert [e.action for e in rest] == ["play"] and more is None


@pytest.mark.parametrize(
    "statement",
    ["UPDATE audit_log SET username = 'someone-else'", "DELETE FROM audit_log"],
)
def test_the_database_refuses_to_change_or_delete_entries(db_sessions, statement):
    write_three(db_sessions)
    with pytest.raises(DatabaseError, match="append-only"), db_sessions.begin() as session:
        session.execute(sa.text(statement))
    with db_sessions() as session:
        assert session.scalar(sa.select(sa.func.count(AuditEntry.id))) == 3
        assert set(session.scalars(sa.select(AuditEntry.username))) == {"lin", "root"}


@pytest.mark.postgres
def test_postgresql_also_refuses_truncate(pg_url):
    from crm_bridge.db.engine import make_engine, make_session_factory
    from crm_bridge.db.migrate import upgrade

    upgrade(pg_url)
    engine = make_engine(pg_url)
    sessions = make_session_factory(engine)
    try:
        write_three(sessions)
        with pytest.raises(DatabaseError, match="append-only"), sessions.begin() as session:
            session.execute(sa.text("TRUNCATE audit_log"))
    finally:
        engine.dispose()


# ------------------------------------------------------------------------------- the page


@pytest.fixture
async def site(tmp_path, monkeypatch) -> AsyncIterator[Site]:
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        with running.sessions().begin() as session:
            session.add(User(username="root", password_hash=hashed(PASSWORD), role="admin"))
        write_three(running.sessions())
        yield running


async def test_admins_read_the_log_and_no_one_else_does(site):
    async with site.signed_in("root") as admin:
        page = await admin.get("/admin/audit")
        assert page.status_code == 200
        assert page.text.count("<tr>") == 4  # the head and three entries
        assert "10.0.0.5" in page.text and "by_day" in page.text
        only_lin = await admin.get("/admin/audit", params={"username": "lin", "action": "play"})
        assert only_lin.text.count("<tr>") == 2
        bad_day = await admin.get("/admin/audit", params={"since": "yesterday"})
        assert bad_day.status_code == 422
    for name in ("lin", "wang"):
        async with site.signed_in(name) as other:
            assert (await other.get("/admin/audit")).status_code == 403


def test_no_route_changes_the_audit_log(site):
    routes = {(method, path) for method, path in every_route(site.app) if "audit" in path}
    assert routes == {("GET", "/admin/audit")}
