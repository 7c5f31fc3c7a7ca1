"""Campaign state in the database (SQLite and PostgreSQL): targets, the attempt claimed before
the Originate, outcomes, retries, the one-call-a-day claim, and ticks racing each other."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from crm_bridge.campaigns import store as store
from crm_bridge.campaigns.audience import select_campaign_audience
from crm_bridge.campaigns.audience_process import AudienceProcess
from crm_bridge.campaigns.rules import parse_rules
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignDayClaim,
    CampaignTarget,
    Customer,
    CustomerPhone,
    DialAttempt,
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
