"""The agent's day on SQLite and PostgreSQL: the calls to return and who took each (two agents
taking one at once), today's figures, the customer edit's checks, and the routes' access rules
over the real app."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from test_pops import CHEAP_ARGON2, ZHANG_SAN, running_site

from crm_bridge.accounts import users
from crm_bridge.accounts.users import UserInputError
from crm_bridge.agent_day import callbacks, history
from crm_bridge.customers.editing import read_edit
from crm_bridge.db.models import AgentStateChange, Call, CallbackClaim, DoNotCall

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 7, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
TODAY = history.today(ZONE, NOW)


def call(linkedid: str, minutes_ago: float, **columns) -> Call:
    values = {"server": "main", "direction": "inbound", "caller": ZHANG_SAN} | columns
    return Call(linkedid=linkedid, offered_at=NOW - timedelta(minutes=minutes_ago), **values)


def test_a_number_is_to_call_back_once_until_someone_reaches_it(db_sessions):
    with db_sessions.begin() as session:
        session.add_all([
            call("z1", 50, disposition="abandoned"),
            call("z2", 40, disposition="no_answer"),  # 张三 tried twice
            call("a1", 30, caller="+8613600136000", disposition="abandoned"),
            call("a2", 20, direction="outbound", caller="1001", callee="+8613600136000",
                 disposition="no_answer"),  # called back, whatever came of it
            call("b1", 25, caller="+8613500135000", disposition="abandoned"),
            call("b2", 10, caller="+8613500135000", disposition="answered"),  # got through
            call("c1", 15, caller="1002", disposition="no_answer"),  # an extension
            call("d1", 15, caller=None, disposition="no_answer"),  # withheld
            call("y1", 60 * 24, caller="+8613400134000", disposition="abandoned"),  # yesterday
            call("e1", 5, caller="+8613300133000", disposition="answered"),
        ])  # fmt: skip
    with db_sessions() as session:
        rows = callbacks.callbacks(session, TODAY)
        assert [(r.call.linkedid, r.tries, r.taken_by) for r in rows] == [("z2", 2, None)]


def test_of_two_agents_taking_a_call_at_once_one_has_it_and_both_see_who(db_sessions):
    with db_sessions.begin() as session:
        missed = call("z1", 5, disposition="abandoned")
        session.add(missed)
        session.flush()
        call_id = missed.id
    start = threading.Barrier(2)
    seen: dict[str, str] = {}

    def take(username: str) -> None:
        start.wait()
        with db_sessions.begin() as session:
            seen[username] = callbacks.take(session, call_id, username)

    threads = [threading.Thread(target=take, args=(name,)) for name in ("wang", "li")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen["wang"] == seen["li"] in ("wang", "li")
    with db_sessions() as session:
        assert [c.taken_by for c in session.query(CallbackClaim)] == [seen["wang"]]
        (row,) = callbacks.callbacks(session, TODAY)
        assert row.taken_by == seen["wang"]
    with db_sessions.begin() as session:  # called back: it leaves the list
        callbacks.called_back(session, call_id)
    with db_sessions() as session:
        assert callbacks.callbacks(session, TODAY) == []


def test_only_a_missed_inbound_call_can_be_taken_and_do_not_call_is_checked(db_sessions):
    with db_sessions.begin() as session:
        answered = call("a", 5, disposition="answered")
        listed = call("b", 5, caller="+8613600136000", disposition="no_answer")
        session.add_all([answered, listed])
        session.flush()
        ids = answered.id, listed.id
        session.execute(DoNotCall.__table__.insert().values(
            number_e164="+8613600136000", added_at=NOW))  # fmt: skip
    with db_sessions.begin() as session:
        with pytest.raises(LookupError, match="没有这个待回拨电话"):
            callbacks.take(session, ids[0], "wang")
        with pytest.raises(LookupError, match="免打扰"):
            callbacks.start_call_back(session, ids[1], "wang")
        callbacks.take(session, ids[1], "li")
    with db_sessions.begin() as session, pytest.raises(callbacks.TakenByOther) as taken:
        session.execute(DoNotCall.__table__.delete())
        callbacks.start_call_back(session, ids[1], "wang")
    assert taken.value.taken_by == "li"


def test_the_figures_of_the_day_count_the_agents_calls_missed_calls_and_state_time(db_sessions):
    mine = frozenset({"1001"})
    with db_sessions.begin() as session:
        session.add_all([
            call("1", 50, agent="1001", disposition="answered", talk_seconds=100.0,
                 agents_rung=["1001"]),
            call("2", 40, agent="1001", disposition="answered", talk_seconds=50.0,
                 agents_rung=["1002", "1001"]),
            call("3", 30, agent="1002", disposition="answered", talk_seconds=70.0,
                 agents_rung=["1001", "1002"]),  # rang me, answered by 1002: missed
            call("4", 20, disposition="abandoned", agents_rung=["1001"]),  # missed
            call("5", 10, disposition="abandoned", agents_rung=["1002"]),  # not mine
            call("6", 60 * 24, agent="1001", disposition="answered", talk_seconds=9.0),
        ])  # fmt: skip
        for state, minutes_ago in (("ready", 60), ("after_call_work", 40), ("ready", 35)):
            session.add(AgentStateChange(agent="1001", state=state, reason="", queues=["q"],
                                         at=NOW - timedelta(minutes=minutes_ago)))  # fmt: skip
    with db_sessions() as session:
        figures = history.day_figures(session, mine, TODAY, NOW)
        page = history.my_calls(session, mine, after=None, limit=2)
        rest = history.my_calls(session, mine, after=page.next_cursor, limit=2)
    assert (figures.handled, figures.talk_seconds, figures.missed) == (2, 150.0, 2)
    assert figures.state.after_call_work == 300.0 and figures.state.logged_in == 3600.0
    assert figures.aht_seconds == (150.0 + 300.0) / 2
    assert [c.linkedid for c in page.calls] == ["2", "1"]
    assert [c.linkedid for c in rest.calls] == ["6"] and rest.next_cursor is None


def test_a_customer_edit_names_every_bad_field_in_both_languages():
    with pytest.raises(UserInputError) as bad:
        read_edit({"name": " ", "gender": "X", "employer": "单" * 129,
                   "birthday": "2030-01-01"}, date(2026, 12, 7))  # fmt: skip
    assert set(bad.value.errors) == {"name", "gender", "employer", "birthday"}
    for message in bad.value.errors.values():
        zh, en = message.split(" / ")
        assert zh and en.isascii()
    edit = read_edit({"name": " 张三 ", "gender": "", "birthday": "1985-03-08"}, date(2026, 12, 7))
    assert (edit.name, edit.gender, edit.employer, edit.birthday) == (
        "张三", None, None, date(1985, 3, 8))  # fmt: skip


@pytest.fixture
async def site(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        yield running


PAGES = ("/me/history", "/me/callbacks", "/customers", "/customers/1")


async def test_the_pages_are_for_the_agent_desk_and_their_forms_need_the_csrf_token(site):
    async with site.signed_in("zhou") as scheduler:
        for path in PAGES:
            assert (await scheduler.get(path)).status_code == 403, path
    async with site.signed_in("lin") as supervisor:  # no extension: no calls of their own
        page = await supervisor.get("/me/history")
        assert page.status_code == 200 and "您的账号没有分机" in page.text
    async with site.signed_in("wang") as agent:
        for path in PAGES:
            assert (await agent.get(path)).status_code == 200, path
        assert (await agent.get("/customers/999")).status_code == 404
        assert (await agent.get("/me/history", params={"after": "junk"})).status_code == 422
        for path in ("/me/callbacks/1/take", "/me/callbacks/1/call", "/customers/1"):
            refused = await agent.post(path, data={"name": "x"})
            assert refused.status_code == 403 and "CSRF" in refused.text, path
