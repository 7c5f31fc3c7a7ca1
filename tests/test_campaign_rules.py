"""Campaign audience rules (SQL on SQLite and PostgreSQL) and the pure dial decision (tables)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from crm_bridge.campaigns.audience import select_campaign_audience
from crm_bridge.campaigns.dial_decision import (
    CallingPolicy,
    DialFacts,
    PolicyIn,
    dial_decision,
    preview,
)
from crm_bridge.campaigns.rules import (
    AfterPurchaseRule,
    BirthdayRule,
    ComplaintFollowupRule,
    FestivalRule,
    TopSpendersRule,
    UploadedListRule,
    festivals_on,
    last_half_month,
    parse_rules,
)
from crm_bridge.db.models import (
    Campaign,
    CampaignDayClaim,
    Complaint,
    Customer,
    CustomerOptOut,
    CustomerPhone,
    DoNotCall,
    Purchase,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
# 2026-11-23 is a Monday; 10:00 in Shanghai.
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
POLICY = CallingPolicy(start=time(9), end=time(20), max_attempts=3)
MARKETING = CallingPolicy(start=time(9), end=time(20), max_attempts=3, marketing=True)


def select_audience(session, rules, today, zone) -> list[int]:
    """What the rules pick, for a service campaign (nobody left out before the dial decision)."""
    return select_campaign_audience(session, rules, today, zone, "CN", marketing=False).ids


def facts(**values) -> DialFacts:
    base = {"customer_id": 1, "numbers": ("+8613800138000",)}
    return DialFacts(**(base | values))


# --------------------------------------------------------------------------- dial decision

DECISIONS = [
    # (what, facts, now, policy, expected reason or None)
    ("plain customer in hours", facts(), NOW, POLICY, None),
    ("no consent", facts(consent=False), NOW, POLICY, "no_consent"),
    ("opted out", facts(opted_out=True), NOW, POLICY, "do_not_call"),
    ("only number on DNC", facts(do_not_call=frozenset({"+8613800138000"})), NOW, POLICY,
     "do_not_call"),
    ("no number", facts(numbers=()), NOW, POLICY, "no_valid_number"),
    ("attempts used up", facts(attempts=3, last_outcome="busy",
                               last_attempt_at=NOW - timedelta(days=1)), NOW, POLICY,
     "attempts_exhausted"),
    ("another campaign today", facts(claims={date(2026, 11, 23): 99}), NOW, POLICY,
     "called_today"),
    ("own campaign's claim is fine", facts(claims={date(2026, 11, 23): 7}), NOW, POLICY, None),
    ("claim of yesterday is fine", facts(claims={date(2026, 11, 22): 99}), NOW, POLICY, None),
    ("busy 5 min ago, retry 10", facts(attempts=1, last_outcome="busy",
                                       last_attempt_at=NOW - timedelta(minutes=5)), NOW, POLICY,
     "retry_wait"),
    ("busy 11 min ago, retry 10", facts(attempts=1, last_outcome="busy",
                                        last_attempt_at=NOW - timedelta(minutes=11)), NOW,
     POLICY, None),
    ("no answer 30 min ago, retry 60", facts(attempts=1, last_outcome="no_answer",
                                             last_attempt_at=NOW - timedelta(minutes=30)), NOW,
     POLICY, "retry_wait"),
    ("blackout", facts(), NOW, CallingPolicy(blackout_dates=frozenset({date(2026, 11, 23)})),
     "blackout_date"),
    ("weekends only", facts(), NOW, CallingPolicy(weekdays=frozenset({5, 6})), "day_not_allowed"),
    ("07:59 Shanghai", facts(), datetime(2026, 11, 22, 23, 59, tzinfo=UTC), POLICY,
     "outside_hours"),
    ("20:00 Shanghai, end excluded", facts(), datetime(2026, 11, 23, 12, 0, tzinfo=UTC), POLICY,
     "outside_hours"),
    # 10:00 in Shanghai is 03:00 in Berlin (previous evening's rules do not apply).
    ("customer in Berlin at 03:00", facts(timezone="Europe/Berlin"), NOW, POLICY,
     "outside_hours"),
    # 18:00 UTC = 02:00 next day Shanghai, but 13:00 in New York.
    ("customer in New York at 13:00", facts(timezone="America/New_York"),
     datetime(2026, 11, 23, 18, 0, tzinfo=UTC), POLICY, None),
    ("overnight window 22-06 at 23:00", facts(), datetime(2026, 11, 23, 15, 0, tzinfo=UTC),
     CallingPolicy(start=time(22), end=time(6)), None),
    ("a baby, marketing", facts(birthday=date(2026, 8, 1)), NOW, MARKETING, "minor"),
    ("17, marketing", facts(birthday=date(2008, 11, 24)), NOW, MARKETING, "minor"),
    ("18 today, marketing", facts(birthday=date(2008, 11, 23)), NOW, MARKETING, None),
    ("tagged a child, marketing", facts(tagged_child=True), NOW, MARKETING, "minor"),
    ("a minor with a guardian's consent", facts(birthday=date(2016, 1, 1), guardian_consent=True),
     NOW, MARKETING, None),
    ("a minor, service call", facts(birthday=date(2016, 1, 1)), NOW, POLICY, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "customer", "now", "policy", "reason"), DECISIONS, ids=[d[0] for d in DECISIONS]
)
def test_dial_decision(what, customer, now, policy, reason):
    decision = dial_decision(customer, now, policy, campaign_id=7)
    assert decision.reason == reason
    assert decision.ok is (reason is None)
    if decision.ok:
        assert decision.number == "+8613800138000"


def test_a_second_number_is_used_when_the_first_is_on_the_list():
    customer = facts(
        numbers=("+8613800138000", "+8613900139000"), do_not_call=frozenset({"+8613800138000"})
    )
    assert dial_decision(customer, NOW, POLICY).number == "+8613900139000"


def test_the_local_day_is_the_customers_own():
    late = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)  # 01:00 on the 24th in Shanghai
    assert dial_decision(facts(), late, POLICY).local_day == date(2026, 11, 24)
    new_york = facts(timezone="America/New_York")
    assert dial_decision(new_york, late, POLICY).local_day == date(2026, 11, 23)


def test_policy_json_round_trip_and_refusals():
    policy = PolicyIn.model_validate({"start": "08:30", "weekdays": [4, 0, 0], "max_attempts": 2})
    assert policy.weekdays == [0, 4]
    assert policy.retry_minutes["busy"] == 10
    assert policy.policy("Asia/Shanghai").start == time(8, 30)
    for bad in ({"weekdays": [7]}, {"weekdays": []}, {"max_attempts": 0}, {"colour": "red"},
                {"retry_minutes": {"busy": -1}}):  # fmt: skip
        with pytest.raises(ValidationError):
            PolicyIn.model_validate(bad)


def test_rules_parse_and_refuse():
    rules = parse_rules(
        [{"kind": "birthday"}, {"kind": "festival", "festivals": ["端午节", "中秋"]}]
    )
    assert rules[1].festivals == ["端午", "中秋"]
    for bad in (
        [{"kind": "horoscope"}],
        [{"kind": "festival", "festivals": ["圣诞老人节"]}],
        [{"kind": "after_purchase", "days": -1}],
        [{"kind": "top_spenders"}],
    ):
        with pytest.raises(ValidationError):
            parse_rules(bad)


# --------------------------------------------------------------------------- calendars


@pytest.mark.parametrize(
    ("day", "festival"),
    [(date(2026, 2, 17), "春节"), (date(2026, 6, 19), "端午"), (date(2026, 9, 25), "中秋"),
     (date(2026, 2, 16), "除夕"), (date(2026, 10, 1), "国庆"), (date(2026, 4, 5), "清明")],
)  # fmt: skip
def test_festivals_come_from_lunar_python(day, festival):
    assert festival in festivals_on(day)
    assert festival not in festivals_on(day + timedelta(days=2))


@pytest.mark.parametrize(
    ("today", "window"),
    [
        (date(2026, 11, 23), (date(2026, 11, 1), date(2026, 11, 15))),
        (date(2026, 11, 15), (date(2026, 10, 16), date(2026, 10, 31))),
        (date(2026, 3, 1), (date(2026, 2, 16), date(2026, 2, 28))),
        (date(2026, 1, 10), (date(2025, 12, 16), date(2025, 12, 31))),
    ],
)
def test_the_last_whole_half_month(today, window):
    assert last_half_month(today) == window


# --------------------------------------------------------------------------- audience in SQL


def _customer(session, card, name, **values):
    phones = values.pop("phones", ["+86138" + card[-5:].rjust(8, "0")])
    customer = Customer(
        card_no=card, name=name, phones=[CustomerPhone(number_e164=p) for p in phones], **values
    )
    session.add(customer)
    session.flush()
    return customer.id


def _ids(session, cards):
    rows = session.query(Customer.id).filter(Customer.card_no.in_(cards)).all()
    return sorted(row.id for row in rows)


def test_birthdays_solar_lunar_and_29_february(db_sessions):
    with db_sessions.begin() as session:
        _customer(session, "C00001", "今天阳历", birthday=date(1980, 2, 28))
        _customer(session, "C00002", "闰日", birthday=date(1984, 2, 29))
        _customer(session, "C00003", "明天", birthday=date(1980, 3, 1))
        # 2027-02-28 is lunar 正月廿三 (2027 lunar new year is 2027-02-06).
        _customer(
            session,
            "C00004",
            "农历",
            birthday=date(1970, 1, 1),
            lunar_birthday=True,
            lunar_birth_month=1,
            lunar_birth_day=23,
        )
        _customer(
            session,
            "C00005",
            "农历但阳历同天",
            birthday=date(1970, 2, 28),
            lunar_birthday=True,
            lunar_birth_month=5,
            lunar_birth_day=5,
        )
    today = date(2027, 2, 28)  # a common year
    with db_sessions() as session:
        found = select_audience(session, [BirthdayRule()], today, SHANGHAI)
        assert found == _ids(session, ["C00001", "C00002", "C00004"])
        leap = select_audience(session, [BirthdayRule()], date(2028, 2, 28), SHANGHAI)
        assert leap == _ids(session, ["C00001"])


def test_purchase_top_spenders_complaints_festival_and_upload(db_sessions):
    today = date(2026, 11, 23)
    with db_sessions.begin() as session:
        a = _customer(session, "C00011", "甲")
        b = _customer(session, "C00012", "乙")
        c = _customer(session, "C00013", "丙", tags=["重要"])
        d = _customer(session, "C00014", "丁", phones=["+8613911112222"])
        session.add_all(
            [
                Purchase(customer_id=a, purchased_on=date(2026, 11, 2), department="家电",
                         amount=Decimal("900")),
                Purchase(customer_id=a, purchased_on=date(2026, 11, 3), department="家电",
                         amount=Decimal("200")),
                Purchase(customer_id=b, purchased_on=date(2026, 11, 5), department="家电",
                         amount=Decimal("1000")),
                Purchase(customer_id=d, purchased_on=date(2026, 11, 20), department="家电",
                         amount=Decimal("99999")),  # after the half month
                Purchase(customer_id=b, purchased_on=date(2026, 11, 9), department="服装",
                         amount=Decimal("10")),
                Purchase(customer_id=d, purchased_on=today - timedelta(days=7), department="服装",
                         amount=Decimal("10")),
                Complaint(customer_id=c, received_at=NOW - timedelta(days=5), content="x",
                          status="resolved", resolved_at=datetime(2026, 11, 21, 17, tzinfo=UTC)),
                Complaint(customer_id=d, received_at=NOW - timedelta(days=5), content="y",
                          status="open"),
            ]
        )  # fmt: skip
    with db_sessions() as session:

        def run(*rules):
            return select_audience(session, rules, today, SHANGHAI)

        # 家电: a spent 1100, b 1000 -> a; 服装: b. Plus 丙 (重要).
        assert run(TopSpendersRule(top_n=1)) == sorted([a, b, c])
        assert run(TopSpendersRule(top_n=1, include_important=False)) == sorted([a, b])
        assert run(AfterPurchaseRule(days=7)) == [d]
        # resolved 2026-11-21 17:00 UTC = 2026-11-22 01:00 in Shanghai: one day before today.
        assert run(ComplaintFollowupRule(days_after=1)) == [c]
        assert run(ComplaintFollowupRule(days_after=2)) == []
        assert run(FestivalRule(festivals=["春节"])) == []
        spring = select_audience(session, [FestivalRule(festivals=["春节"])], date(2026, 2, 17),
                                 SHANGHAI)  # fmt: skip
        assert spring == sorted([a, b, c, d])
        uploaded = UploadedListRule(entries=["139 1111 2222", "C00011", "nobody", " "])
        assert run(uploaded) == sorted([a, d])
        assert run(uploaded, AfterPurchaseRule(days=7)) == sorted([a, d])


def test_preview_counts_who_is_left_out_and_why(db_sessions):
    with db_sessions.begin() as session:
        ok = _customer(session, "C00021", "好")
        no_consent = _customer(session, "C00022", "不同意", consent_to_calls=False)
        dnc = _customer(session, "C00023", "免打扰", phones=["+8613700000001"])
        opted = _customer(session, "C00024", "退订")
        no_number = _customer(session, "C00025", "空号", phones=["+86123"])
        other_today = _customer(session, "C00026", "已呼")
        session.add_all(
            [
                DoNotCall(number_e164="+8613700000001"),
                CustomerOptOut(customer_id=opted, source="admin"),
                Campaign(id=50, name="另一个", kind="promotion", mode="message"),
            ]
        )
        session.flush()
        session.add(CampaignDayClaim(customer_id=other_today, local_day=date(2026, 11, 23),
                                     campaign_id=50))  # fmt: skip
    ids = [ok, no_consent, dnc, opted, no_number, other_today]
    with db_sessions() as session:
        result = preview(session, ids, NOW, POLICY, campaign_id=None)
        assert result.included == [ok]
        assert result.excluded == {
            no_consent: "no_consent",
            dnc: "do_not_call",
            opted: "do_not_call",
            no_number: "no_valid_number",
            other_today: "called_today",
        }
        assert result.counts == {
            "no_consent": 1,
            "do_not_call": 2,
            "no_valid_number": 1,
            "called_today": 1,
        }
        at_night = preview(session, [ok], NOW + timedelta(hours=12), POLICY)
        assert at_night.counts == {"outside_hours": 1}
