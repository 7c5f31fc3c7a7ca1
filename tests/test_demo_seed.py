"""The demo archive: realistic, deterministic, idempotent, and holding the trace callers."""

from __future__ import annotations

import re
from datetime import date

import pytest
import sqlalchemy as sa

from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import (
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    VisitRecord,
    find_customers_by_phone,
)
from crm_bridge.demo.seed import seed_demo

TODAY = date(2024, 5, 20)
COUNTED = (Customer, CustomerPhone, Purchase, VisitRecord, Complaint)


def counts(sessions) -> dict[str, int]:
    with sessions() as session:
        return {
            model.__name__: session.scalar(sa.select(sa.func.count()).select_from(model))
            for model in COUNTED
        }


def snapshot(sessions) -> list[tuple]:
    with sessions() as session:
        rows = session.scalars(
            sa.select(Customer)
            .order_by(Customer.card_no)
            .options(sa.orm.selectinload(Customer.phones))
        )
        return [
            (
                c.card_no,
                c.name,
                c.gender,
                c.birthday,
                c.lunar_birth_month,
                c.vip_level,
                c.tags,
                [p.number_e164 for p in c.phones],
            )
            for c in rows
        ]


def test_default_archive_is_large_and_varied(sqlite_sessions):
    assert seed_demo(sqlite_sessions, today=TODAY) == 1000
    numbers = counts(sqlite_sessions)
    assert numbers["Customer"] == 1000
    assert numbers["CustomerPhone"] >= 1000
    assert numbers["Purchase"] > 1500
    assert numbers["VisitRecord"] > 500
    with sqlite_sessions() as session:
        customers = session.scalars(sa.select(Customer)).all()
        names = [c.name for c in customers]
        assert all(re.fullmatch(r"[\u4e00-\u9fff]{2,3}", name) for name in names)
        assert len(set(names)) > 500
        assert {c.gender for c in customers} == {"M", "F"}
        assert {c.vip_level for c in customers} == {"普通", "银卡", "金卡", "钻石"}
        birthdays_today = [
            c for c in customers if c.birthday and (c.birthday.month, c.birthday.day) == (5, 20)
        ]
        assert len(birthdays_today) >= 5
        assert sum(c.lunar_birthday for c in customers) >= 50
        assert sum(not c.consent_to_calls for c in customers) >= 10
        departments = set(session.scalars(sa.select(Purchase.department).distinct()))
        assert departments == {"内科", "外科", "眼科", "齿科", "体检中心"}
        open_complaints = session.scalar(
            sa.select(sa.func.count()).select_from(Complaint).where(Complaint.status == "open")
        )
        assert open_complaints >= 5
        opinions = session.scalars(
            sa.select(VisitRecord.opinions).where(VisitRecord.opinions.is_not(None))
        )
        assert any("等候时间" in text for text in opinions)


def test_running_twice_adds_nothing(db_sessions):
    assert seed_demo(db_sessions, count=150, today=TODAY) == 150
    before = counts(db_sessions)
    assert seed_demo(db_sessions, count=150, today=TODAY) == 0
    assert counts(db_sessions) == before


def test_a_larger_count_adds_only_the_missing_customers(sqlite_sessions):
    seed_demo(sqlite_sessions, count=100, today=TODAY)
    first = snapshot(sqlite_sessions)
    assert seed_demo(sqlite_sessions, count=130, today=TODAY) == 30
    assert snapshot(sqlite_sessions)[:100] == first


def _fresh(tmp_path, name: str):
    url = f"sqlite:///{tmp_path / name}"
    upgrade(url)
    return make_engine(url)


@pytest.mark.parametrize(("seed", "same"), [(42, True), (43, False)])
def test_the_archive_is_decided_by_the_seed(tmp_path, sqlite_sessions, seed, same):
    seed_demo(sqlite_sessions, count=80, seed=42, today=TODAY)
    engine = _fresh(tmp_path, "other.db")
    other = make_session_factory(engine)
    seed_demo(other, count=80, seed=seed, today=TODAY)
    assert (snapshot(other) == snapshot(sqlite_sessions)) is same
    engine.dispose()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """One archive of 200 customers shared by the look-up tests (which only read)."""
    engine = _fresh(tmp_path_factory.mktemp("seeded"), "demo.db")
    sessions = make_session_factory(engine)
    seed_demo(sessions, count=200, today=TODAY)
    yield sessions
    engine.dispose()


@pytest.mark.parametrize(
    ("number", "names"),
    [
        ("13800138000", ["张三"]),
        ("13800138001", ["王芳"]),
        ("13800138002", ["刘洋"]),
        ("13800138003", ["陈静"]),
        ("13800138004", ["杨磊"]),
        ("13800138005", ["赵敏"]),
        ("13900000001", ["黄丽"]),
        ("13900000002", ["周强"]),
        ("13900000003", ["吴婷"]),
        ("13900000004", ["徐明"]),
        ("13700137000", ["李四", "李小四"]),  # a family phone: a multiple match
        ("13800000000", []),  # a caller of the load traces: unknown
        ("13800000049", []),
    ],
)
def test_trace_callers_are_found_by_phone(seeded, number, names):
    with seeded() as session:
        found = find_customers_by_phone(session, "+86" + number)
        assert [c.name for c in found] == names


def test_trace_customers_tell_a_story(db_sessions):
    seed_demo(db_sessions, count=50, today=TODAY)
    with db_sessions() as session:
        (zhang,) = find_customers_by_phone(session, "+8613800138000")
        assert zhang.card_no == "C10000"
        assert (zhang.birthday.month, zhang.birthday.day) == (TODAY.month, TODAY.day)
        assert "open" in [complaint.status for complaint in zhang.complaints]
        (huang,) = find_customers_by_phone(session, "+8613900000001")
        assert (huang.card_no, huang.vip_level) == ("C10086", "钻石")
        li_si = session.scalars(sa.select(Customer).where(Customer.card_no == "C20001")).one()
        assert (li_si.lunar_birthday, li_si.lunar_birth_month, li_si.lunar_birth_day) == (
            True,
            1,
            15,
        )


def test_a_29_february_birthday_today_falls_in_a_leap_year(sqlite_sessions):
    seed_demo(sqlite_sessions, count=20, today=date(2024, 2, 29))
    with sqlite_sessions() as session:
        (zhang,) = find_customers_by_phone(session, "+8613800138000")
        assert zhang.birthday == date(1984, 2, 29)
