"""Agent states without Asterisk: the state derived from memberships, the stores' checks, the
agent time the KPIs add up from the state history, and the wallboard's day figures (the KPI
page's own numbers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crm_bridge.agent_states import store
from crm_bridge.agent_states.domain import (
    AFTER_CALL_REASON,
    AgentState,
    agent_status,
    extension_of,
)
from crm_bridge.db.models import AgentStateChange, Call
from crm_bridge.supervision.agent_time import agent_time
from crm_bridge.supervision.kpis import Period, inbound_kpis
from crm_bridge.wallboard.figures import day_figures
from telephony.queue_members import MemberState

SHANGHAI = ZoneInfo("Asia/Shanghai")


def member(queue="support", paused=False, reason="", in_call=False, status="1") -> MemberState:
    return MemberState(queue, "Local/1001@agents/n", "Agent 1001", "PJSIP/1001", 0, paused,
                       reason, in_call, status, True)  # fmt: skip


def test_the_state_of_an_agent_from_their_memberships():
    assert agent_status([]).state is AgentState.LOGGED_OUT
    assert agent_status([member()]).state is AgentState.READY
    assert agent_status([member(status="2")]).state is AgentState.ON_CALL
    acw = agent_status([member(paused=True, reason=AFTER_CALL_REASON), member("vip")])
    assert acw.state is AgentState.AFTER_CALL_WORK and acw.queues == ("support", "vip")
    # paused in one queue only: still rung by the other, so ready
    assert agent_status([member(paused=True, reason="小休"), member("vip")]).state is (
        AgentState.READY
    )
    both = agent_status([member(paused=True, reason="小休"), member("vip", True, "小休")])
    assert (both.state, both.reason) == (AgentState.PAUSED, "小休")
    assert agent_status([member(paused=True, status="2")]).state is AgentState.ON_CALL


def test_the_extension_in_a_member_interface():
    template = "Local/{extension}@agents/n"
    assert extension_of("Local/1001@agents/n", template) == "1001"
    assert extension_of("PJSIP/1001", template) is None
    assert extension_of("Local/a;b@agents/n", template) is None


def test_pause_reasons_are_checked(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        assert store.active_reasons(session) == ["小休", "用餐", "培训", "会议"]
        with pytest.raises(store.StoreInputError) as refused:
            store.add_reason(session, AFTER_CALL_REASON)
        assert "label" in refused.value.errors
        with pytest.raises(store.StoreInputError):
            store.add_reason(session, "  ")
        store.add_reason(session, "辅导")
        with pytest.raises(store.StoreInputError) as refused:
            store.add_reason(session, " 辅导 ")  # shown already
        assert refused.value.errors["label"].startswith("已有此原因 / ")
        meeting = next(r for r in store.all_reasons(session) if r.label == "会议")
        store.set_reason_active(session, meeting.id, False)
    with sqlite_sessions() as session:
        assert store.active_reasons(session) == ["小休", "用餐", "培训", "辅导"]
    with sqlite_sessions.begin() as session:
        assert store.add_reason(session, "会议").id == meeting.id  # a hidden one shown again


def test_queue_settings_are_all_checked_before_any_is_kept(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        with pytest.raises(store.StoreInputError) as refused:
            bad = {"after_call_seconds": "-1", "penalty": "0", "service_level_seconds": "0",
                   "waiting_alert": "3", "longest_wait_alert_seconds": "x"}  # fmt: skip
            store.save_queue_rules(session, "support", bad)
        assert set(refused.value.errors) == {"after_call_seconds", "service_level_seconds",
                                             "longest_wait_alert_seconds"}  # fmt: skip
        assert store.queue_rules(session) == {}
        store.save_queue_rules(session, "support", {"after_call_seconds": "15", "penalty": "2",
                               "service_level_seconds": "30", "waiting_alert": "3",
                               "longest_wait_alert_seconds": "60"})  # fmt: skip
    with sqlite_sessions() as session:
        assert store.queue_rules(session)["support"].after_call_seconds == 15


T0 = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def changes(session, agent, steps):
    at = T0
    for state, reason, seconds in steps:
        session.add(AgentStateChange(agent=agent, state=state, reason=reason,
                                     queues=["support"], at=at))  # fmt: skip
        at += timedelta(seconds=seconds)


def test_agent_time_from_the_state_history(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        changes(session, "1001", [("ready", "", 60), ("on_call", "", 120),
                                  ("after_call_work", AFTER_CALL_REASON, 30),
                                  ("paused", "用餐", 600), ("paused", "小休", 300),
                                  ("ready", "", 90), ("logged_out", "", 0)])  # fmt: skip
    period = Period(T0 - timedelta(hours=1), T0 + timedelta(hours=5), SHANGHAI)
    with sqlite_sessions() as session:
        (row,) = agent_time(session, "agent", period, now=T0 + timedelta(hours=6))
        (day,) = agent_time(session, "day", period, now=T0 + timedelta(hours=6))
    assert (row.key, row.ready, row.on_call, row.after_call_work) == ("1001", 150, 120, 30)
    assert row.paused_by_reason == {"用餐": 600, "小休": 300}
    assert row.logged_in == 1200
    assert row.occupancy == pytest.approx(150 / 300)
    assert day.key == "2026-11-22" and day.logged_in == 1200


def test_aht_is_talk_plus_after_call_work(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        for talk in (100.0, 200.0):
            session.add(Call(linkedid=f"l{talk}", server="default", direction="inbound",
                             queue="support", agent="1001", disposition="answered",
                             offered_at=T0, answered_at=T0, ended_at=T0, wait_seconds=5,
                             talk_seconds=talk))  # fmt: skip
    period = Period(T0 - timedelta(hours=1), T0 + timedelta(hours=1), SHANGHAI)
    with sqlite_sessions() as session:
        (plain,) = inbound_kpis(session, "agent", period)
        (row,) = inbound_kpis(session, "agent", period, after_call={"1001": 60.0})
    assert plain.aht_seconds == pytest.approx(150.0)
    assert row.aht_seconds == pytest.approx(150.0 + 30.0)


def test_the_wallboard_day_figures_are_the_kpi_pages(sqlite_sessions):
    now = T0 + timedelta(hours=2)
    with sqlite_sessions.begin() as session:
        rows = [("answered", 5, now - timedelta(minutes=5)),
                ("answered", 40, now - timedelta(minutes=10)),
                ("abandoned", 30, now - timedelta(hours=1)),
                ("answered", 10, now - timedelta(hours=1, minutes=30))]  # fmt: skip
        for index, (disposition, wait, at) in enumerate(rows):
            session.add(Call(linkedid=f"w{index}", server="default", direction="inbound",
                             queue="support", disposition=disposition, offered_at=at,
                             ended_at=at, wait_seconds=wait))  # fmt: skip
        store.save_queue_rules(session, "support", {"after_call_seconds": "0", "penalty": "0",
                               "service_level_seconds": "15", "waiting_alert": "3",
                               "longest_wait_alert_seconds": "60"})  # fmt: skip
    with sqlite_sessions() as session:
        figures = day_figures(session, SHANGHAI, now)["support"]
        midnight = now.astimezone(SHANGHAI).replace(hour=0, minute=0)
        (kpi,) = inbound_kpis(session, "queue", Period(midnight, now, SHANGHAI),
                              threshold_seconds=15)  # fmt: skip
    assert (figures.answered, figures.abandoned) == (kpi.answered, kpi.abandoned) == (3, 1)
    assert figures.service_level_today == kpi.service_level == pytest.approx(2 / 4)
    assert figures.service_level_recent == pytest.approx(1 / 2)
