"""The screen pop's data: caller lookup, the customer card, and birthdays solar and lunar."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event

from crm_bridge.customers.birthdays import (
    age_on,
    birthday_label,
    is_birthday_today,
    lunar_date,
    lunar_day_name,
)
from crm_bridge.customers.card import PopLookup, build_cards, lookup_caller, lookup_callers
from crm_bridge.customers.card_queries import MAX_CARDS, OPEN_COMPLAINTS_SHOWN
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.models import Call, Complaint, Customer, CustomerPhone, Purchase, VisitRecord

ZONE = ZoneInfo("Asia/Shanghai")
TODAY = date(2026, 9, 25)  # 中秋节: lunar 8/15
NOON = datetime(2026, 9, 25, 4, 0, tzinfo=UTC)  # 12:00 in the center
ZHANG_MOBILE = "13800138000"
FAMILY_PHONE = "13700137000"
LIST_TABLES = ("purchases", "visit_records", "complaints", "calls")
REAL_TABLES = ("customers", "customer_phones", *LIST_TABLES)
BY_CUSTOMER = r"SEARCH {table} USING (COVERING )?INDEX \w+ \(customer_id=\?"


def lookup(session, raw: str | None, **options) -> PopLookup:
    return lookup_caller(session, raw, zone=ZONE, today=TODAY, **options)


def new_customer(card_no: str, name: str, *phones: tuple[str, str], **fields) -> Customer:
    customer = Customer(card_no=card_no, name=name, **fields)
    for raw, kind in phones:
        customer.phones.append(CustomerPhone(number_e164=normalize_phone(raw).e164, kind=kind))
    return customer


def purchase(on: date, amount: str, department: str = "齿科") -> Purchase:
    return Purchase(purchased_on=on, department=department, amount=Decimal(amount), items="洗牙")


def call(linkedid: str, customer: Customer | None, offered_at: datetime | None) -> Call:
    return Call(
        linkedid=linkedid,
        server="pbx1",
        direction="inbound",
        customer=customer,
        offered_at=offered_at,
        agent="客服小王",
        disposition="answered",
        talk_seconds=42.5,
    )


def add_zhang(session) -> Customer:
    """张三: lunar birthday 8/15 (today), purchases around the 12-month edge, 7 visits,
    12 open complaints and 2 closed ones, 7 calls; another customer's rows beside them.
    """
    zhang = new_customer(
        "C10000",
        "张三",
        (ZHANG_MOBILE, "mobile"),
        ("010-62345678", "work"),
        gender="M",
        birthday=date(1985, 3, 5),
        lunar_birthday=True,
        lunar_birth_month=8,
        lunar_birth_day=15,
        employer="腾飞电子科技有限公司",
        department="技术部",
        vip_level="金卡",
        tags=["老客户", "种植牙"],
    )
    zhang.purchases = [
        purchase(TODAY, "100.10"),
        purchase(TODAY, "200.20"),  # same day, entered later: listed first
        purchase(date(2026, 6, 1), "300.30"),
        purchase(date(2025, 9, 26), "400.40"),  # the first day of the last 12 months
        purchase(date(2025, 9, 25), "500.50"),  # a year ago today: before them
        purchase(date(2024, 1, 1), "600.60"),
    ]
    zhang.visits = [
        VisitRecord(
            visited_at=NOON - timedelta(days=days),
            place="电话回访",
            channel="phone",
            opinions=f"意见{days}",
            suggestions="增加线上预约时段",
            visited_by="客服小李",
        )
        for days in (4, 1, 7, 3, 6, 2, 5)
    ]
    zhang.complaints = [
        Complaint(
            received_at=NOON - timedelta(days=days),
            content=f"投诉{days}",
            status="open" if days % 2 else "in_progress",
            handler="客服小陈",
            escalated_to="客服主管" if days == 1 else None,
        )
        for days in range(12, 0, -1)
    ] + [
        Complaint(received_at=NOON, content="已解决", status="resolved"),
        Complaint(received_at=NOON, content="已关闭", status="closed"),
    ]
    other = new_customer("C10001", "王芳", ("13800138001", "mobile"))
    other.purchases = [purchase(TODAY, "9999.99")]
    other.complaints = [Complaint(received_at=NOON, content="别人的投诉", status="open")]
    session.add_all([zhang, other])
    session.add_all(call(f"zhang-{days}", zhang, NOON - timedelta(days=days)) for days in range(7))
    session.add_all([call("other-1", other, NOON), call("family", None, NOON)])
    return zhang


def add_family(session) -> tuple[Customer, Customer]:
    """李四 and his son 李小四 share the home phone; each has 6 purchases and 6 calls."""
    father = new_customer(
        "C20001",
        "李四",
        ("13700137001", "mobile"),
        (FAMILY_PHONE, "home"),
        lunar_birthday=True,
        lunar_birth_month=1,
        lunar_birth_day=15,
    )
    son = new_customer("C20002", "李小四", (FAMILY_PHONE, "home"), birthday=date(2012, 4, 1))
    for index, person in enumerate((father, son)):
        base = 1000 * (index + 1)
        person.purchases = [
            purchase(TODAY - timedelta(days=30 * month), f"{base + month}.00") for month in range(6)
        ]
        person.visits = [
            VisitRecord(visited_at=NOON - timedelta(days=days), channel="phone")
            for days in range(6)
        ]
        person.complaints = [Complaint(received_at=NOON, content="投诉", status="open")]
    session.add_all([father, son])
    session.add_all(
        call(f"{person.card_no}-{days}", person, NOON - timedelta(days=days))
        for person in (father, son)
        for days in range(6)
    )
    return father, son


def test_known_caller_gets_one_card_with_aggregates_and_newest_lists(db_sessions):
    with db_sessions.begin() as session:
        add_zhang(session)
    with db_sessions() as session:
        result = lookup(session, ZHANG_MOBILE)

    assert (result.kind, result.number_e164, result.customer_count) == (
        "known",
        "+8613800138000",
        1,
    )
    (card,) = result.cards
    assert (card.card_no, card.name, card.gender, card.vip_level) == ("C10000", "张三", "M", "金卡")
    assert (card.employer, card.department) == ("腾飞电子科技有限公司", "技术部")
    assert [(p.number_e164, p.kind) for p in card.phones] == [
        ("+8613800138000", "mobile"),
        ("+861062345678", "work"),
    ]
    assert card.tags == ["老客户", "种植牙"] and card.consent_to_calls is True
    assert card.lifetime_spend == Decimal("2102.10")
    assert card.spend_last_12_months == Decimal("1001.00")
    assert [p.amount for p in card.last_purchases] == [
        Decimal(a) for a in ("200.20", "100.10", "300.30", "400.40", "500.50")
    ]
    assert [v.opinions for v in card.last_visits] == [f"意见{days}" for days in (1, 2, 3, 4, 5)]
    assert card.last_visits[0].visited_at == NOON - timedelta(days=1)
    assert card.last_visits[0].visited_at.utcoffset() == timedelta(hours=8)
    assert card.open_complaint_count == 12
    assert len(card.open_complaints) == OPEN_COMPLAINTS_SHOWN
    assert [c.content for c in card.open_complaints] == [f"投诉{days}" for days in range(1, 11)]
    assert card.open_complaints[0].escalated_to == "客服主管"
    assert {c.status for c in card.open_complaints} == {"open", "in_progress"}
    assert [c.offered_at for c in card.last_calls] == [
        NOON - timedelta(days=days) for days in range(5)
    ]
    assert card.last_calls[0].talk_seconds == 42.5

    data = result.model_dump(mode="json")["cards"][0]
    assert (data["lifetime_spend"], data["spend_last_12_months"]) == ("2102.10", "1001.00")
    assert data["last_purchases"][0]["amount"] == "200.20"
    assert data["last_visits"][0]["visited_at"] == "2026-09-24T12:00:00+08:00"


def test_family_phone_gives_every_holder_their_own_card(db_sessions):
    with db_sessions.begin() as session:
        add_family(session)
    with db_sessions() as session:
        result = lookup(session, FAMILY_PHONE)

    assert (result.kind, result.customer_count) == ("multiple", 2)
    father, son = result.cards
    assert (father.name, son.name) == ("李四", "李小四")
    assert [p.number_e164 for p in father.phones] == ["+8613700137001", "+8613700137000"]
    assert [p.number_e164 for p in son.phones] == ["+8613700137000"]
    assert [p.amount for p in father.last_purchases] == [
        Decimal(f"100{month}.00") for month in range(5)
    ]
    assert [p.amount for p in son.last_purchases] == [
        Decimal(f"200{month}.00") for month in range(5)
    ]
    assert (father.lifetime_spend, son.lifetime_spend) == (Decimal("6015.00"), Decimal("12015.00"))
    assert len(father.last_visits) == len(son.last_visits) == 5
    assert [c.offered_at for c in son.last_calls] == [
        NOON - timedelta(days=days) for days in range(5)
    ]
    assert father.open_complaint_count == son.open_complaint_count == 1
    assert (father.birthday_kind, father.birthday_label) == ("lunar", "农历正月十五")
    assert (son.birthday_kind, son.birthday_label, son.age) == ("solar", "4月1日", 14)


def test_card_shows_birthday_today_and_age(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        add_zhang(session)
    with sqlite_sessions() as session:
        (card,) = lookup(session, ZHANG_MOBILE).cards
        tomorrow = lookup_caller(
            session, ZHANG_MOBILE, zone=ZONE, today=TODAY + timedelta(days=1)
        ).cards[0]

    assert (card.birthday_kind, card.birthday_today, card.birthday_label) == (
        "lunar",
        True,
        "农历八月十五",
    )
    assert (card.lunar_birth_month, card.lunar_birth_day) == (8, 15)
    assert (card.birthday, card.age) == (date(1985, 3, 5), 41)
    assert tomorrow.birthday_today is False


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "+8613800138000", "008613800138000", "+86 138-0013-8000", "138 0013 8000"],
)
def test_mobile_forms_find_the_same_customer(sqlite_sessions, raw):
    with sqlite_sessions.begin() as session:
        add_zhang(session)
    with sqlite_sessions() as session:
        result = lookup(session, raw)
    assert result.kind == "known" and result.cards[0].card_no == "C10000"


@pytest.mark.parametrize(
    ("raw", "prefix"),
    [
        ("010-62345678", None),
        ("01062345678", None),
        ("+86 10 6234 5678", None),
        ("00861062345678", None),
        ("901062345678", "9"),
    ],
)
def test_landline_forms_find_the_same_customer(sqlite_sessions, raw, prefix):
    with sqlite_sessions.begin() as session:
        add_zhang(session)
    with sqlite_sessions() as session:
        result = lookup(session, raw, outside_line_prefix=prefix)
    assert result.kind == "known" and result.cards[0].card_no == "C10000"


@pytest.mark.parametrize(
    ("raw", "kind", "number"),
    [
        ("13900139000", "unknown", "+8613900139000"),
        ("not a number", "unknown", None),
        ("anonymous", "withheld", None),
        ("", "withheld", None),
        (None, "withheld", None),
        ("1001", "internal", None),
    ],
)
def test_callers_without_a_card(sqlite_sessions, raw, kind, number):
    with sqlite_sessions.begin() as session:
        add_zhang(session)
    with sqlite_sessions() as session:
        result = lookup(session, raw)
    assert (result.kind, result.number_e164, result.cards) == (kind, number, [])


def test_a_switchboard_number_pops_a_bounded_number_of_cards(sqlite_sessions):
    holders = MAX_CARDS + 2
    with sqlite_sessions.begin() as session:
        session.add_all(
            new_customer(f"S{index:03d}", f"员工{index}", ("0755-86001234", "work"))
            for index in range(holders)
        )
    with sqlite_sessions() as session:
        result = lookup(session, "075586001234")
        with pytest.raises(ValueError, match="at most"):
            build_cards(session, list(range(1, holders + 1)), today=TODAY, zone=ZONE)
    assert (result.kind, result.customer_count) == ("multiple", holders)
    assert [card.card_no for card in result.cards] == [f"S{i:03d}" for i in range(MAX_CARDS)]


def test_build_cards_by_id_skips_unknown_ids(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        zhang = add_zhang(session)
    with sqlite_sessions() as session:
        cards = build_cards(session, [zhang.id, 9999], today=TODAY, zone=ZONE)
    assert [card.name for card in cards] == ["张三"]


def test_the_repr_of_a_lookup_hides_phone_numbers(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        add_zhang(session)
    with sqlite_sessions() as session:
        text = repr(lookup(session, ZHANG_MOBILE))
    assert "张三" in text
    assert not re.search(r"\d{8}", text)


def test_lookup_uses_a_fixed_handful_of_indexed_queries(sqlite_sessions):
    """Every list and sum walks a customer_id index (no scan), and the number of queries does
    not grow with the customers on the number or the rows behind them.
    """
    with sqlite_sessions.begin() as session:
        add_zhang(session)
        add_family(session)
    with sqlite_sessions() as session:
        engine = session.get_bind()
        single = _statements(engine, lambda: lookup(session, ZHANG_MOBILE))
        family = _statements(engine, lambda: lookup(session, FAMILY_PHONE))
        plans = [
            [row[3] for row in session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", p)]
            for sql, p in family
        ]

    assert len(single) == len(family) == 8  # one reads the names of the agents of the last calls
    searched = set()
    for plan in plans:
        for line in plan:
            match = re.match(r"(SEARCH|SCAN) (\w+)", line)
            if not match or match[2] not in REAL_TABLES:
                continue
            assert match[1] == "SEARCH", f"full scan: {line}"
            if match[2] in LIST_TABLES:
                assert re.match(BY_CUSTOMER.format(table=match[2]), line), line
                searched.add(match[2])
    assert searched == set(LIST_TABLES)


def test_callers_looked_up_together_get_what_each_gets_alone(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        add_zhang(session)
        add_family(session)
        session.add_all(
            new_customer(f"S{index:03d}", f"员工{index}", ("0755-86001234", "work"))
            for index in range(MAX_CARDS + 2)
        )
    numbers = [
        FAMILY_PHONE,
        ZHANG_MOBILE,
        None,
        "1001",
        "075586001234",
        "+8613900000000",
        "not a number",
        "008613800138000",
    ]
    with sqlite_sessions() as session:
        together = lookup_callers(session, numbers, zone=ZONE, today=TODAY)
        alone = [lookup(session, number) for number in numbers]
    assert together == alone
    assert [found.kind for found in together] == [
        "multiple", "known", "withheld", "internal", "multiple", "unknown", "unknown", "known"
    ]  # fmt: skip


def test_a_batch_of_callers_costs_a_few_queries_not_a_few_per_caller(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        session.add_all(
            new_customer(f"B{index:03d}", f"客户{index}", (f"1390000{index:04d}", "mobile"))
            for index in range(50)
        )
    numbers = [f"1390000{index:04d}" for index in range(50)]
    with sqlite_sessions() as session:
        statements = _statements(
            session.get_bind(),
            lambda: lookup_callers(session, numbers, zone=ZONE, today=TODAY),
        )
        found = lookup_callers(session, numbers, zone=ZONE, today=TODAY)
    assert [f.cards[0].card_no for f in found] == [f"B{index:03d}" for index in range(50)]
    assert len(statements) == 1 + 6 * 5  # the holders, then six per ten cards


def _statements(engine, run) -> list[tuple[str, tuple]]:
    seen: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return [(sql, params) for sql, params in seen if sql.lstrip().upper().startswith("SELECT")]


def solar(born: date) -> Customer:
    return Customer(birthday=born, lunar_birthday=False)


def lunar(month: int, day: int, born: date | None = None) -> Customer:
    return Customer(
        birthday=born, lunar_birthday=True, lunar_birth_month=month, lunar_birth_day=day
    )


@pytest.mark.parametrize(
    ("customer", "today", "expected"),
    [
        pytest.param(solar(date(1985, 3, 5)), date(2026, 3, 5), True, id="solar"),
        pytest.param(solar(date(1985, 3, 5)), date(2026, 3, 6), False, id="solar-next-day"),
        pytest.param(solar(date(2000, 2, 29)), date(2027, 2, 28), True, id="29feb-common-year"),
        pytest.param(solar(date(2000, 2, 29)), date(2027, 3, 1), False, id="29feb-not-1mar"),
        pytest.param(solar(date(2000, 2, 29)), date(2028, 2, 28), False, id="29feb-leap-waits"),
        pytest.param(solar(date(2000, 2, 29)), date(2028, 2, 29), True, id="29feb-leap-year"),
        pytest.param(solar(date(1990, 2, 28)), date(2028, 2, 29), False, id="28feb-not-29feb"),
        pytest.param(lunar(8, 15), date(2026, 9, 25), True, id="mid-autumn-2026"),
        pytest.param(lunar(8, 15), date(2026, 9, 24), False, id="lunar-day-before"),
        pytest.param(lunar(1, 1), date(2026, 2, 17), True, id="spring-festival-2026"),
        pytest.param(lunar(1, 1), date(2027, 2, 6), True, id="spring-festival-2027"),
        pytest.param(lunar(12, 30), date(2026, 2, 16), True, id="30th-on-29th-short-month"),
        pytest.param(lunar(12, 29), date(2026, 2, 16), True, id="29th-short-month"),
        pytest.param(lunar(8, 30), date(2026, 10, 9), True, id="30th-8th-month-2026"),
        pytest.param(lunar(12, 30), date(2024, 2, 8), False, id="30th-waits-long-month"),
        pytest.param(lunar(12, 30), date(2024, 2, 9), True, id="30th-long-month"),
        pytest.param(lunar(6, 15), date(2025, 7, 9), True, id="6th-month-2025"),
        pytest.param(lunar(6, 15), date(2025, 8, 8), False, id="not-in-leap-6th-month"),
        pytest.param(lunar(6, 30), date(2025, 7, 24), True, id="30th-6th-month-2025"),
        pytest.param(lunar(6, 30), date(2025, 8, 22), False, id="not-29th-of-leap-month"),
        pytest.param(lunar(2, 1), date(2023, 2, 20), True, id="2nd-month-2023"),
        pytest.param(lunar(2, 1), date(2023, 3, 22), False, id="not-in-leap-2nd-month"),
        pytest.param(lunar(8, 15), date(1978, 9, 17), True, id="mid-autumn-1978"),
        pytest.param(lunar(1, 1), date(1900, 1, 31), True, id="range-start-1900"),
        pytest.param(lunar(1, 1), date(2100, 2, 9), True, id="range-end-2100"),
        pytest.param(
            lunar(8, 15, date(1985, 3, 5)), date(2026, 3, 5), False, id="lunar-wins-over-solar"
        ),
    ],
)
def test_is_birthday_today(customer, today, expected):
    kind = "lunar" if customer.lunar_birthday else "solar"
    assert is_birthday_today(customer, today) == (expected, kind)


def test_no_birthday_known():
    assert is_birthday_today(Customer(lunar_birthday=False), TODAY) == (False, None)
    assert birthday_label(Customer(lunar_birthday=False)) is None


@pytest.mark.parametrize(
    ("solar_day", "lunar_day"),
    [
        (date(2026, 9, 25), (2026, 8, 15, False, 29)),
        (date(2027, 2, 6), (2027, 1, 1, False, 30)),
        (date(2026, 2, 16), (2025, 12, 29, False, 29)),
        (date(2023, 3, 22), (2023, 2, 1, True, 29)),
        (date(2025, 8, 8), (2025, 6, 15, True, 29)),
        (date(2033, 12, 22), (2033, 11, 1, True, 29)),
        (date(1900, 1, 31), (1900, 1, 1, False, 29)),
        (date(2100, 12, 31), (2100, 12, 1, False, 29)),
    ],
)
def test_lunar_date_matches_the_published_calendar(solar_day, lunar_day):
    day = lunar_date(solar_day)
    assert (day.year, day.month, day.day, day.leap, day.days_in_month) == lunar_day


@pytest.mark.parametrize(
    ("customer", "label"),
    [
        (lunar(8, 15), "农历八月十五"),
        (lunar(1, 1), "农历正月初一"),
        (lunar(11, 10), "农历冬月初十"),
        (lunar(12, 30), "农历腊月三十"),
        (lunar(5, 20), "农历五月二十"),
        (lunar(9, 21), "农历九月廿一"),
        (solar(date(1985, 3, 5)), "3月5日"),
        (solar(date(1990, 12, 25)), "12月25日"),
    ],
)
def test_birthday_label(customer, label):
    assert birthday_label(customer) == label


def test_lunar_day_names():
    names = [lunar_day_name(day) for day in range(1, 31)]
    assert names[:3] == ["初一", "初二", "初三"]
    assert names[9:12] == ["初十", "十一", "十二"]
    assert names[18:22] == ["十九", "二十", "廿一", "廿二"]
    assert names[28:] == ["廿九", "三十"]
    assert len(set(names)) == 30


@pytest.mark.parametrize(
    ("born", "today", "age"),
    [
        (date(1985, 3, 5), date(2026, 3, 4), 40),
        (date(1985, 3, 5), date(2026, 3, 5), 41),
        (date(2000, 2, 29), date(2027, 2, 27), 26),
        (date(2000, 2, 29), date(2027, 2, 28), 27),
        (date(2000, 2, 29), date(2028, 2, 28), 27),
        (None, date(2026, 3, 5), None),
        (date(2030, 1, 1), date(2026, 3, 5), None),
    ],
)
def test_age_on(born, today, age):
    assert age_on(born, today) == age
