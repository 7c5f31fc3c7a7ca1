"""Campaign state in the database (SQLite and PostgreSQL): targets, the attempt claimed before
the Originate, outcomes, retries, the one-call-a-day claim, and ticks racing each other."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from crm_bridge.campaigns import store as store
from crm_bridge.campaigns.audience import select_campaign_audience
from crm_bridge.campaigns.audience_process import AudienceProcess
from crm_bridge.campaigns.dial_decision import preview
from crm_bridge.campaigns.rules import parse_rules
from crm_bridge.customers.birthdays import age_on, born_by_for_age
from crm_bridge.customers.card import build_cards
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignDayClaim,
    CampaignTarget,
    Customer,
    CustomerPhone,
    DialAttempt,
    GuardianConsent,
)
from telephony.dialer import MESSAGE_LEFT

TZ = "Asia/Shanghai"
ZONE = ZoneInfo(TZ)
NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)  # Monday 10:00 in Shanghai
ALL_DAY = {"start": "00:00", "end": "00:00", "max_attempts": 2, "retry_minutes": {"busy": 10}}


def add_customers(sessions, count: int, prefix: str = "C") -> list[int]:
    with sessions.begin() as session:
        customers = [
            Customer(
                card_no=f"{prefix}{i:05d}",
                name=f"客户{i}",
                phones=[CustomerPhone(number_e164=f"+86138{i:08d}")],
            )
            for i in range(count)
        ]
        session.add_all(customers)
        session.flush()
        return [c.id for c in customers]


def running_campaign(sessions, ids, name="回访", policy=ALL_DAY) -> int:
    with sessions.begin() as session:
        campaign = Campaign(
            name=name,
            kind="return_visit",
            mode="message",
            greeting_file="greeting.wav",
            rules=[{"kind": "uploaded", "entries": [f"C{i:05d}" for i in range(len(ids))]}],
            policy=policy,
        )
        session.add(campaign)
        session.flush()
        store.start_campaign(session, campaign.id, NOW, ZONE, "CN")
        return campaign.id


def test_start_builds_targets_once_and_the_status_moves(db_sessions):
    ids = add_customers(db_sessions, 3)
    cid = running_campaign(db_sessions, ids)
    with db_sessions.begin() as session:
        assert store.progress(session, cid).targets == 3
        store.add_targets(session, cid, ids)  # again: nobody twice
        assert store.progress(session, cid).targets == 3
        assert store.set_status(session, cid, "pause", NOW) == "paused"
        with pytest.raises(store.CampaignError):
            store.set_status(session, cid, "pause", NOW)
        assert store.start_campaign(session, cid, NOW, ZONE, "CN") == 3  # resume
        assert store.set_status(session, cid, "stop", NOW) == "stopped"
        with pytest.raises(store.CampaignError):
            store.start_campaign(session, cid, NOW, ZONE, "CN")


def test_an_attempt_is_committed_before_dialling_and_settled_once(db_sessions):
    ids = add_customers(db_sessions, 1)
    cid = running_campaign(db_sessions, ids)
    with db_sessions() as session:
        (target,) = store.due_target_ids(session, cid, NOW, 10)
    ticket = store.claim_attempt(db_sessions, target, NOW, TZ)
    assert ticket is not None and ticket.attempt_no == 1
    assert ticket.number_e164 == "+8613800000000"
    # committed: another session sees it, and the target is no longer due
    with db_sessions() as session:
        assert session.scalar(select(func.count(DialAttempt.id))) == 1
        assert store.due_target_ids(session, cid, NOW, 10) == []
    assert store.claim_attempt(db_sessions, target, NOW, TZ) is None
    # busy: retried after 10 minutes, not before
    assert store.record_outcome(db_sessions, ticket.attempt_id, "busy", NOW, TZ)
    assert not store.record_outcome(db_sessions, ticket.attempt_id, "answered", NOW, TZ)
    with db_sessions() as session:
        assert store.due_target_ids(session, cid, NOW + timedelta(minutes=9), 10) == []
        assert store.due_target_ids(session, cid, NOW + timedelta(minutes=10), 10) == [target]
    second = store.claim_attempt(db_sessions, target, NOW + timedelta(minutes=10), TZ)
    assert second is not None and second.attempt_no == 2
    store.record_outcome(db_sessions, second.attempt_id, "no_answer", NOW, TZ)
    with db_sessions() as session:  # max_attempts 2: failed
        row = session.get(CampaignTarget, target)
        assert (row.state, row.attempts, row.last_outcome) == ("failed", 2, "no_answer")
        assert store.progress(session, cid).by_outcome["busy"] == 1
    with db_sessions.begin() as session:
        assert store.finish_if_done(session, cid, NOW)
        assert session.get(Campaign, cid).status == "done"


def test_a_machine_is_called_again_after_its_delay_and_a_message_left_is_done(db_sessions):
    ids = add_customers(db_sessions, 2)
    cid = running_campaign(db_sessions, ids, policy={**ALL_DAY, "retry_minutes": {"machine": 30}})
    with db_sessions() as session:
        hung_up_on, left = store.due_target_ids(session, cid, NOW, 10)
    first = store.claim_attempt(db_sessions, hung_up_on, NOW, TZ)
    message = store.claim_attempt(db_sessions, left, NOW, TZ)
    assert first is not None and message is not None
    assert store.record_outcome(db_sessions, first.attempt_id, "machine", NOW, TZ, "4")
    assert store.record_outcome(db_sessions, message.attempt_id, "machine", NOW, TZ, MESSAGE_LEFT)
    later = NOW + timedelta(minutes=30)
    with db_sessions() as session:
        assert session.get(CampaignTarget, left).state == "done"
        assert store.due_target_ids(session, cid, later - timedelta(minutes=1), 10) == []
        assert store.due_target_ids(session, cid, later, 10) == [hung_up_on]
        progress = store.progress(session, cid)
        assert (progress.by_outcome["machine"], progress.messages_left) == (2, 1)
    second = store.claim_attempt(db_sessions, hung_up_on, later, TZ)
    assert second is not None and second.attempt_no == 2
    store.record_outcome(db_sessions, second.attempt_id, "machine", later, TZ, "4")
    with db_sessions() as session:  # max_attempts 2: failed
        row = session.get(CampaignTarget, hung_up_on)
        assert (row.state, row.attempts, row.last_outcome) == ("failed", 2, "machine")


def test_the_attempt_key_is_unique(db_sessions):
    ids = add_customers(db_sessions, 1)
    cid = running_campaign(db_sessions, ids)
    with db_sessions.begin() as session:
        session.add(
            DialAttempt(
                campaign_id=cid,
                customer_id=ids[0],
                attempt_no=1,
                number_e164="+8613800000000",
                action_id="a1",
                channel_id="c1",
            )
        )
    with pytest.raises(IntegrityError), db_sessions.begin() as session:
        session.add(
            DialAttempt(
                campaign_id=cid,
                customer_id=ids[0],
                attempt_no=1,
                number_e164="+8613800000000",
                action_id="a2",
                channel_id="c2",
            )
        )


def test_outside_hours_is_looked_at_again_later_and_paused_dials_nobody(db_sessions):
    ids = add_customers(db_sessions, 1)
    cid = running_campaign(db_sessions, ids, policy={"start": "12:00", "end": "13:00"})
    with db_sessions() as session:
        (target,) = store.due_target_ids(session, cid, NOW, 10)
    assert store.claim_attempt(db_sessions, target, NOW, TZ) is None
    with db_sessions() as session:
        row = session.get(CampaignTarget, target)
        assert (row.state, row.skip_reason) == ("pending", "outside_hours")
        assert row.next_attempt_at == NOW + store.RECHECK_AFTER
    noon = datetime(2026, 11, 23, 4, 30, tzinfo=UTC)
    with db_sessions.begin() as session:
        store.set_status(session, cid, "pause", noon)
    assert store.claim_attempt(db_sessions, target, noon, TZ) is None
    with db_sessions.begin() as session:
        store.start_campaign(session, cid, noon, ZONE, "CN")
    assert store.claim_attempt(db_sessions, target, noon, TZ) is not None


def test_one_campaign_call_a_day_across_campaigns(db_sessions):
    ids = add_customers(db_sessions, 1)
    first = running_campaign(db_sessions, ids, "生日")
    second = running_campaign(db_sessions, ids, "促销")
    with db_sessions() as session:
        (t1,) = store.due_target_ids(session, first, NOW, 10)
        (t2,) = store.due_target_ids(session, second, NOW, 10)
    assert store.claim_attempt(db_sessions, t1, NOW, TZ) is not None
    assert store.claim_attempt(db_sessions, t2, NOW, TZ) is None
    with db_sessions() as session:
        row = session.get(CampaignTarget, t2)
        assert row.skip_reason == "called_today"
        # tomorrow at 00:00 in Shanghai
        assert row.next_attempt_at == datetime(2026, 11, 23, 16, 0, tzinfo=UTC)
    tomorrow = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert store.claim_attempt(db_sessions, t2, tomorrow, TZ) is not None
    with db_sessions() as session:
        assert session.scalar(select(func.count(CampaignDayClaim.id))) == 2


@pytest.mark.parametrize("ticks", [2, 4])
def test_concurrent_ticks_never_insert_the_same_attempt(db_sessions, ticks):
    ids = add_customers(db_sessions, 30)
    first = running_campaign(db_sessions, ids, "甲")
    second = running_campaign(db_sessions, ids, "乙")
    barrier = threading.Barrier(ticks)
    tickets: list[store.Ticket] = []
    lock = threading.Lock()

    def tick() -> None:
        barrier.wait()
        for campaign in (first, second):
            with db_sessions() as session:
                due = store.due_target_ids(session, campaign, NOW, 100)
            for target in due:
                ticket = store.claim_attempt(db_sessions, target, NOW, TZ)
                if ticket is not None:
                    with lock:
                        tickets.append(ticket)

    threads = [threading.Thread(target=tick) for _ in range(ticks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [(t.campaign_id, t.customer_id, t.attempt_no) for t in tickets]
    assert len(keys) == len(set(keys))
    # every customer dialled once today, by one campaign or the other
    assert sorted(t.customer_id for t in tickets) == sorted(ids)
    with db_sessions() as session:
        assert session.scalar(select(func.count(DialAttempt.id))) == len(ids)


def test_attempts_left_by_a_stopped_run_are_settled_from_the_call_log(db_sessions):
    ids = add_customers(db_sessions, 2)
    cid = running_campaign(db_sessions, ids)
    with db_sessions() as session:
        targets = store.due_target_ids(session, cid, NOW, 10)
    logged, silent = (store.claim_attempt(db_sessions, t, NOW, TZ) for t in targets)
    with db_sessions.begin() as session:
        session.add(
            Call(
                linkedid=logged.channel_id,
                server="pbx",
                direction="outbound",
                disposition="answered",
            )
        )
    assert store.reconcile_unresolved(db_sessions, NOW + timedelta(seconds=5), TZ, set()) == 1
    # the silent one waits out the grace period, then counts as lost and is retried
    assert store.reconcile_unresolved(db_sessions, NOW + timedelta(seconds=6), TZ, set()) == 0
    later = NOW + store.UNRESOLVED_GRACE + timedelta(seconds=1)
    assert store.reconcile_unresolved(db_sessions, later, TZ, set()) == 1
    with db_sessions() as session:
        states = dict(session.execute(select(DialAttempt.channel_id, DialAttempt.outcome)).all())
        assert states == {logged.channel_id: "answered", silent.channel_id: "lost"}
        assert store.campaign_for_attempt(session, logged.channel_id) == (cid, logged.customer_id)
        row = session.scalars(
            select(CampaignTarget).where(CampaignTarget.customer_id == silent.customer_id)
        ).one()
        assert (row.state, row.attempts) == ("pending", 1)


def test_the_audience_process_picks_what_the_rules_pick_in_the_session(db_url, db_sessions):
    """The service selects audiences in a process of its own (no time taken from the pops);
    it reads the same database and gets the same customers, on SQLite and PostgreSQL."""
    ids = add_customers(db_sessions, 12)
    rules = [{"kind": "uploaded", "entries": ["C00003", "C00007", "+8613800000011", "nobody"]}]
    audience = AudienceProcess(db_url, ZONE, "CN")
    try:
        picked = audience.select(rules, NOW.date(), "promotion")
        assert audience.select(rules, NOW.date(), "promotion") == picked  # the same process
    finally:
        audience.close()
    with db_sessions() as session:
        in_session = select_campaign_audience(
            session, parse_rules(rules), NOW.date(), ZONE, "CN", marketing=True
        )
    assert picked == in_session
    assert picked.ids == [ids[3], ids[7], ids[11]]
    assert [(u.entry, u.reason) for u in picked.unmatched] == [("nobody", "unknown_card")]


# --------------------------------------------------------------------------- who is left out


def add_people(sessions, people: dict[str, dict]) -> dict[str, int]:
    """Customers by card no., each with a number of its own; their ids by card no."""
    with sessions.begin() as session:
        rows = {
            card: Customer(card_no=card, name=card, phones=[CustomerPhone(number_e164=number)],
                           **values)
            for (card, values), number in zip(
                people.items(), (f"+86137{i:08d}" for i in range(len(people))), strict=True
            )
        }  # fmt: skip
        session.add_all(rows.values())
        session.flush()
        return {card: row.id for card, row in rows.items()}


PEOPLE = {
    "ADULT": {"birthday": date(1990, 5, 1)},
    "EIGHTEEN_TODAY": {"birthday": date(2008, 11, 23)},
    "EIGHTEEN_TOMORROW": {"birthday": date(2008, 11, 24)},
    "CHILD": {"birthday": date(2016, 1, 1)},
    "TAGGED": {"birthday": date(1980, 1, 1), "tags": ["儿童"]},
    "CONSENTED": {"birthday": date(2012, 6, 1)},
    "NO_BIRTHDAY": {},
}
"""NOW is 23 November 2026 in Shanghai: whoever is born after 23 November 2008 is under 18."""


def test_a_marketing_selection_leaves_out_minors_without_a_guardians_consent(db_sessions):
    ids = add_people(db_sessions, PEOPLE)
    with db_sessions.begin() as session:
        session.add(
            GuardianConsent(customer_id=ids["CONSENTED"], guardian="母亲 李", recorded_by="root")
        )
    rules = parse_rules([{"kind": "uploaded", "entries": list(PEOPLE)}])
    with db_sessions() as session:
        marketing = select_campaign_audience(session, rules, NOW.date(), ZONE, "CN", True)
        service = select_campaign_audience(session, rules, NOW.date(), ZONE, "CN", False)
        festival = select_campaign_audience(
            session, parse_rules([{"kind": "festival", "festivals": ["春节"]}]),
            date(2026, 2, 17), ZONE, "CN", True,
        )  # fmt: skip
    left_out = {ids[card]: "minor" for card in ("EIGHTEEN_TOMORROW", "CHILD", "TAGGED")}
    assert marketing.left_out == left_out
    assert marketing.ids == sorted(set(ids.values()) - set(left_out))
    assert service.ids == sorted(ids.values()) and service.left_out == {}
    # a rule that picks everyone, on 17 February 2026: the same minors, and one not yet 18
    assert festival.left_out == dict(sorted({**left_out, ids["EIGHTEEN_TODAY"]: "minor"}.items()))

    with db_sessions() as session:
        shown = preview(session, marketing.ids, NOW, store.campaign_policy(
            Campaign(policy=ALL_DAY), TZ), None, marketing.left_out)  # fmt: skip
    assert shown.audience == len(PEOPLE)
    assert list(shown.excluded)[:3] == list(left_out)  # the selection's reasons come first
    assert shown.counts == {"minor": 3}


@pytest.mark.parametrize(
    ("kind", "targets"), [("promotion", {"ADULT", "EIGHTEEN_TODAY", "CONSENTED", "NO_BIRTHDAY"}),
                          ("return_visit", set(PEOPLE))]
)  # fmt: skip
def test_a_started_campaign_has_the_targets_its_preview_showed(db_url, db_sessions, kind, targets):
    """The start builds the targets from the same selection (in the selection process)."""
    ids = add_people(db_sessions, PEOPLE)
    with db_sessions.begin() as session:
        session.add(
            GuardianConsent(customer_id=ids["CONSENTED"], guardian="父亲", recorded_by="root")
        )
        campaign = Campaign(name="试", kind=kind, mode="preview", policy=ALL_DAY,
                            rules=[{"kind": "uploaded", "entries": list(PEOPLE)}])  # fmt: skip
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    audience = AudienceProcess(db_url, ZONE, "CN")
    try:
        with db_sessions.begin() as session:
            started = store.start_campaign(session, campaign_id, NOW, ZONE, "CN", audience.select)
    finally:
        audience.close()
    with db_sessions() as session:
        picked = set(session.scalars(
            select(Customer.card_no).join(CampaignTarget, CampaignTarget.customer_id == Customer.id)
        ))  # fmt: skip
    assert picked == targets and started == len(targets)


@pytest.mark.parametrize(
    ("today", "born_by"),
    [
        (date(2026, 11, 23), date(2008, 11, 23)),
        (date(2028, 2, 29), date(2010, 2, 28)),  # nobody is born on 29 February 2010
        (date(2026, 2, 28), date(2008, 2, 29)),  # a 29 February child is 18 on 28 February
        (date(2026, 3, 1), date(2008, 3, 1)),
    ],
)
def test_the_latest_date_of_birth_for_18_years(today, born_by):
    assert born_by_for_age(18, today) == born_by
    assert age_on(born_by, today) == 18
    assert age_on(born_by + timedelta(days=1), today) == 17


def test_pasted_entries_that_match_no_one_are_listed_with_the_reason(db_sessions):
    ids = add_customers(db_sessions, 3)
    entries = ["C00001", "+86 138 0000 0002", "C09999", "139 1234 5678", "C09999", " ", "12ab"]
    with db_sessions() as session:
        audience = select_campaign_audience(
            session, parse_rules([{"kind": "uploaded", "entries": entries}]), NOW.date(), ZONE,
            "CN", False,
        )  # fmt: skip
    assert audience.ids == [ids[1], ids[2]]
    assert [(u.entry, u.reason) for u in audience.unmatched] == [
        ("C09999", "unknown_card"),  # once, though pasted twice
        ("139 1234 5678", "unknown_number"),
        ("12ab", "unknown_card"),
    ]
    assert "No customer has this number" in audience.unmatched[1].label


def test_an_agents_preview_call_is_held_until_it_is_settled(db_sessions):
    ids = add_customers(db_sessions, 2)
    cid = running_campaign(db_sessions, ids)
    with db_sessions() as session:
        first, second = store.due_target_ids(session, cid, NOW, 10)
    ticket = store.claim_attempt(db_sessions, first, NOW, TZ, placed_by="wang")
    assert ticket is not None
    assert store.claim_attempt(db_sessions, second, NOW, TZ) is not None  # the runner's
    with db_sessions() as session:
        (held,) = store.held_preview_attempts(session, "wang")
        assert (held.id, held.customer_id) == (ticket.attempt_id, ids[0])
        assert store.held_preview_attempts(session, "li") == []
    assert store.record_outcome(db_sessions, ticket.attempt_id, "answered", NOW, TZ)
    with db_sessions() as session:
        assert store.held_preview_attempts(session, "wang") == []


def test_the_card_shows_a_guardians_consent(db_sessions):
    ids = add_people(db_sessions, {"CHILD": PEOPLE["CHILD"], "ADULT": PEOPLE["ADULT"]})
    with db_sessions.begin() as session:
        session.add(GuardianConsent(customer_id=ids["CHILD"], guardian="母亲", recorded_by="root",
                                    recorded_at=NOW))  # fmt: skip
    with db_sessions() as session:
        child, adult = build_cards(session, [ids["CHILD"], ids["ADULT"]], today=NOW.date(),
                                   zone=ZONE)  # fmt: skip
    assert child.guardian_consent is not None
    assert (child.guardian_consent.guardian, child.guardian_consent.recorded_by) == ("母亲", "root")
    assert child.guardian_consent.recorded_at == NOW and child.age == 10
    assert adult.guardian_consent is None


def test_a_guardians_consent_withdrawn_after_the_start_stops_the_call(db_sessions):
    """The dial decision checks again at the moment of dialling: a marketing campaign does not
    call a minor whose guardian's consent was withdrawn after the start; a service one does."""
    ids = add_people(db_sessions, {"CONSENTED": PEOPLE["CONSENTED"]})
    with db_sessions.begin() as session:
        session.add(
            GuardianConsent(customer_id=ids["CONSENTED"], guardian="父亲", recorded_by="root")
        )
        campaigns = {}
        for kind in ("promotion", "return_visit"):
            campaign = Campaign(name=kind, kind=kind, mode="preview", policy=ALL_DAY,
                                rules=[{"kind": "uploaded", "entries": ["CONSENTED"]}])  # fmt: skip
            session.add(campaign)
            session.flush()
            assert store.start_campaign(session, campaign.id, NOW, ZONE, "CN") == 1
            campaigns[kind] = campaign.id
        session.execute(delete(GuardianConsent))
    with db_sessions() as session:
        targets = {kind: store.due_target_ids(session, cid, NOW, 1)[0]
                   for kind, cid in campaigns.items()}  # fmt: skip
    assert store.claim_attempt(db_sessions, targets["promotion"], NOW, TZ) is None
    with db_sessions() as session:
        skipped = session.get(CampaignTarget, targets["promotion"])
        assert (skipped.state, skipped.skip_reason) == ("skipped", "minor")
    assert store.claim_attempt(db_sessions, targets["return_visit"], NOW, TZ) is not None
