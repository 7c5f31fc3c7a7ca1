"""Migrations on SQLite and PostgreSQL, and the engine set-up they run on."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError, StatementError

import crm_bridge
from crm_bridge.db.engine import (
    make_engine,
    make_session_factory,
    normalize_url,
)
from crm_bridge.db.migrate import MIGRATIONS_DIR, alembic_config, downgrade, upgrade
from crm_bridge.db.models import (
    Base,
    Call,
    CallNote,
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    Recording,
    find_customers_by_phone,
    in_model_schema,
)

ROOT = Path(__file__).resolve().parents[1]
TABLES = {
    "customers",
    "customer_phones",
    "purchases",
    "visit_records",
    "complaints",
    "calls",
    "recordings",
    "users",
    "call_notes",
    "transcription_jobs",
    "transcript_segments",
    "audit_log",
    "complaint_events",
    "supervision_settings",
    "recording_deletions",
    "watch_words",
    "call_flags",
    "campaigns",
    "campaign_targets",
    "dial_attempts",
    "campaign_day_claims",
    "do_not_call",
    "customer_opt_outs",
    "guardian_consents",
    "department_spend",
    "live_speech_alerts",
    "agent_state_changes",
    "pause_reasons",
    "queue_settings",
    "routing_settings",
    "routing_tiers",
    "account_managers",
    "callback_claims",
    "quality_reviews",
    "survey_prompts",
}


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_of(url: str) -> tuple[str | None, dict[str, object]]:
    """The current revision and, per table, its columns, indexes and constraints."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            inspector = sa.inspect(connection)
            revision = MigrationContext.configure(connection).get_current_revision()
            tables = {
                name: (
                    [
                        (c["name"], str(c["type"]), c["nullable"])
                        for c in inspector.get_columns(name)
                    ],
                    sorted(i["name"] for i in inspector.get_indexes(name)),
                    sorted(str(u["name"]) for u in inspector.get_unique_constraints(name)),
                    sorted(str(f["name"]) for f in inspector.get_foreign_keys(name)),
                )
                for name in inspector.get_table_names()
                if in_model_schema(name, "table", {})  # not SQLite's FTS5 tables
            }
    finally:
        engine.dispose()
    return revision, tables


def test_migrations_ship_inside_the_package():
    package = Path(crm_bridge.__file__).resolve().parent
    assert MIGRATIONS_DIR.is_relative_to(package)
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert (MIGRATIONS_DIR / "script.py.mako").is_file()
    assert (MIGRATIONS_DIR / "versions" / "0001_initial.py").is_file()
    assert alembic_config().config_file_name is None  # no alembic.ini needed at run time


def test_upgrade_creates_every_table(db_url):
    upgrade(db_url)
    revision, tables = schema_of(db_url)
    assert revision == head_revision()
    assert set(tables) == TABLES | {"alembic_version"}


def test_models_match_the_migrated_schema(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            opts = {"compare_type": True, "include_name": in_model_schema}
            context = MigrationContext.configure(connection, opts=opts)
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(db_url):
    upgrade(db_url)
    sessions_engine = make_engine(db_url)
    with make_session_factory(sessions_engine).begin() as session:
        session.add(Customer(card_no="C1", name="张三"))
    sessions_engine.dispose()
    before = schema_of(db_url)
    upgrade(db_url)
    assert schema_of(db_url) == before
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        assert session.scalars(sa.select(Customer.name)).all() == ["张三"]
    engine.dispose()


def test_downgrade_to_base_drops_every_table_and_upgrade_comes_back(db_url):
    upgrade(db_url)
    downgrade(db_url, "base")
    revision, tables = schema_of(db_url)
    assert revision is None
    assert set(tables) == {"alembic_version"}
    upgrade(db_url)
    assert set(schema_of(db_url)[1]) == TABLES | {"alembic_version"}


def test_0002_replaces_two_indexes_and_its_downgrade_keeps_the_data(db_url):
    upgrade(db_url, "0001")
    engine = make_engine(db_url)
    with engine.begin() as connection:  # SQL, not the models: they are at the newest revision
        connection.execute(
            sa.text(
                "INSERT INTO customers (id, card_no, name, lunar_birthday, tags,"
                " consent_to_calls, created_at, updated_at)"
                " VALUES (1, 'C1', '张三', false, '[]', true, :now, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        connection.execute(
            sa.text(
                "INSERT INTO complaints (customer_id, received_at, content, status)"
                " VALUES (1, :now, 'x', 'open')"
            ),
            {"now": datetime.now(UTC)},
        )
    engine.dispose()
    old = schema_of(db_url)
    upgrade(db_url, "0002")
    _, tables = schema_of(db_url)
    assert "ix_calls_customer_id_offered_at" in tables["calls"][1]
    assert "ix_calls_customer_id" not in tables["calls"][1]
    assert "ix_customer_phones_number_e164_customer_id" in tables["customer_phones"][1]
    assert "ix_customer_phones_number_e164" not in tables["customer_phones"][1]
    assert ("linkedid", "VARCHAR(64)", True) in tables["complaints"][0]
    downgrade(db_url, "0001")
    assert schema_of(db_url) == old
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        assert session.scalars(sa.select(Complaint.content)).all() == ["x"]
    engine.dispose()


def test_alembic_ini_at_the_root_works_for_developers(tmp_path):
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={url}", "upgrade", "head"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert schema_of(url)[0] == head_revision()


def test_sqlite_engine_settings(tmp_path):
    database = tmp_path / "new" / "folder" / "cb.db"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as connection:
            pragma = connection.exec_driver_sql
            assert pragma("PRAGMA journal_mode").scalar() == "wal"
            assert pragma("PRAGMA foreign_keys").scalar() == 1
            assert pragma("PRAGMA busy_timeout").scalar() == 5000
    finally:
        engine.dispose()
    assert database.is_file()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+psycopg"])
def test_postgresql_urls_use_psycopg_3(scheme):
    url = normalize_url(f"{scheme}://cb:pw@db.internal:5433/callbridge")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database, url.password) == (
        "db.internal",
        5433,
        "callbridge",
        "pw",
    )


@pytest.mark.postgres
def test_postgresql_engine_connects_with_psycopg(pg_url):
    engine = make_engine(pg_url)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


def test_constraints_hold(db_sessions):
    with db_sessions.begin() as session:
        session.add(
            Customer(
                card_no="C1", name="张三", phones=[CustomerPhone(number_e164="+8613800138000")]
            )
        )
    for bad in (
        Customer(card_no="C1", name="重复卡号"),
        Customer(card_no="C2", name="性别", gender="X"),
        Customer(card_no="C3", name="农历", lunar_birthday=True),
        Call(linkedid="L1", server="pbx", disposition="hung"),
        CallNote(linkedid="L9", agent_username="wang", wrapup_code="chat"),
        CallNote(linkedid="L9", agent_username="wang", note="长" * 2001),
    ):
        with pytest.raises(IntegrityError), db_sessions.begin() as session:
            session.add(bad)
    with db_sessions.begin() as session:
        session.add(Call(linkedid="L2", server="pbx"))
    with pytest.raises(IntegrityError), db_sessions.begin() as session:
        session.add(Call(linkedid="L2", server="pbx2"))


def test_deleting_a_customer_removes_their_records_and_unlinks_calls(db_sessions):
    with db_sessions.begin() as session:
        customer = Customer(
            card_no="C1", name="张三", phones=[CustomerPhone(number_e164="+8613800138000")]
        )
        customer.purchases = [
            Purchase(purchased_on=datetime(2024, 5, 1).date(), amount=Decimal("199.90"))
        ]
        call = Call(linkedid="L1", server="pbx", customer=customer)
        call.recordings = [Recording(path="2024/05/01/L1.wav", status="ok")]
        session.add_all([customer, call])
    with db_sessions.begin() as session:
        session.execute(sa.delete(Customer))
    with db_sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(CustomerPhone)) == 0
        assert session.scalar(sa.select(sa.func.count()).select_from(Purchase)) == 0
        call = session.scalars(sa.select(Call)).one()
        assert call.customer_id is None
        assert [r.path for r in call.recordings] == ["2024/05/01/L1.wav"]


def test_money_keeps_its_cents(db_sessions):
    with db_sessions.begin() as session:
        customer = Customer(card_no="C1", name="张三")
        customer.purchases = [
            Purchase(purchased_on=datetime(2024, 5, 1).date(), amount=Decimal("1234567.89"))
        ]
        session.add(customer)
    with db_sessions() as session:
        assert session.scalars(sa.select(Purchase.amount)).one() == Decimal("1234567.89")


def test_times_are_stored_in_utc_and_come_back_aware(db_sessions):
    beijing = timezone(timedelta(hours=8))
    offered = datetime(2024, 5, 1, 9, 30, tzinfo=beijing)
    with db_sessions.begin() as session:
        session.add(Call(linkedid="L1", server="pbx", offered_at=offered))
    with db_sessions() as session:
        stored = session.scalars(sa.select(Call.offered_at)).one()
        assert stored == offered
        assert stored.tzinfo is UTC
        assert stored.hour == 1
        later = session.scalars(
            sa.select(Call.linkedid).where(
                Call.offered_at >= datetime(2024, 5, 1, 1, 0, tzinfo=UTC)
            )
        ).all()
        assert later == ["L1"]
    with pytest.raises(StatementError, match="naive datetime"), db_sessions.begin() as session:
        session.add(Call(linkedid="L2", server="pbx", offered_at=datetime(2024, 5, 1, 9, 30)))


def test_a_family_phone_finds_every_customer_and_others_find_none(db_sessions):
    family = "+8613700137000"
    with db_sessions.begin() as session:
        session.add_all(
            [
                Customer(
                    card_no="C1",
                    name="李四",
                    phones=[CustomerPhone(number_e164=family, kind="home")],
                ),
                Customer(
                    card_no="C2",
                    name="李小四",
                    phones=[CustomerPhone(number_e164=family, kind="home")],
                ),
                Customer(
                    card_no="C3", name="王五", phones=[CustomerPhone(number_e164="+8613800138000")]
                ),
            ]
        )
    with db_sessions() as session:
        assert [c.name for c in find_customers_by_phone(session, family)] == ["李四", "李小四"]
        assert find_customers_by_phone(session, "+8613911112222") == []


def test_sqlite_savepoints_roll_back_only_their_part(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        session.add(Customer(card_no="C1", name="张三"))
        savepoint = session.begin_nested()
        session.add(Customer(card_no="C2", name="李四"))
        session.flush()
        savepoint.rollback()
    with sqlite_sessions() as session:
        assert session.scalars(sa.select(Customer.card_no)).all() == ["C1"]


def _read_then_write(begin, card_no: str, other_writer: threading.Thread) -> None:
    with begin() as session:
        session.scalar(select(func.count()).select_from(Customer))
        other_writer.start()
        time.sleep(0.3)  # the other writer commits (or waits) now
        session.add(Customer(card_no=card_no, name="读后写"))


@contextmanager
def _deferred(sessions):
    """A transaction begun as plain BEGIN: a session that reads, then begins explicitly."""
    with sessions() as session, session.begin():
        yield session


def _writer(sessions, card_no: str, done: list[str]) -> threading.Thread:
    def write() -> None:
        with sessions.begin() as session:
            session.add(Customer(card_no=card_no, name="先写"))
        done.append(card_no)

    return threading.Thread(target=write)


def test_sqlite_read_then_write_waits_its_turn_in_a_writing_transaction(sqlite_sessions):
    """``sessions.begin()`` (crm_bridge/db/engine.py ``SessionFactory``) takes the write lock
    at BEGIN on SQLite."""
    done: list[str] = []
    # Begun as plain BEGIN, the reader's upgrade to a writer fails once the other writer
    # has committed: SQLite cannot wait there.
    other = _writer(sqlite_sessions, "W1", done)
    with pytest.raises(OperationalError, match="locked"):
        _read_then_write(lambda: _deferred(sqlite_sessions), "R1", other)
    other.join()
    # Begun IMMEDIATE, the other writer waits for the reader-writer instead; both land.
    other = _writer(sqlite_sessions, "W2", done)
    _read_then_write(sqlite_sessions.begin, "R2", other)
    other.join()
    with sqlite_sessions() as session:
        cards = set(session.scalars(select(Customer.card_no)))
    assert cards == {"W1", "W2", "R2"} and done == ["W1", "W2"]
