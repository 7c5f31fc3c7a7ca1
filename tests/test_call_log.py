"""The call log on SQLite and PostgreSQL: written once per Linkedid, linked to the customer."""

from __future__ import annotations

import pytest

from crm_bridge.calls.call_log import CallFilter, CallLog, NumberRules, list_calls
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, Customer, CustomerPhone
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, load_trace

TRACES = RECORDED_TRACES


@pytest.fixture
def sessions(db_url):
    upgrade(db_url)
    engine = make_engine(db_url)
    yield make_session_factory(engine)
    engine.dispose()


def tracked_calls(*names: str, mode: str = "sip") -> list:
    tracker = CallTracker(server="pbx1")
    out = []
    for name in names:
        out += tracker.feed_all(load_trace(TRACES / mode / f"{name}.ami").events)
    return [e.call for e in out if isinstance(e, CallEnded)]


def add_customer(sessions, card_no: str, name: str, *numbers: str) -> int:
    with sessions.begin() as session:
        customer = Customer(card_no=card_no, name=name)
        customer.phones = [CustomerPhone(number_e164=n, kind="mobile") for n in numbers]
        session.add(customer)
        session.flush()
        return customer.id


def test_calls_are_written_once_and_linked_to_the_customer(sessions):
    zhang = add_customer(sessions, "C0001", "张三", "+8613800138000")
    log = CallLog(sessions, NumberRules("CN"))
    calls = tracked_calls("a_inbound_answered_1001", "d_outbound_return_visit_answered")
    ids = [log.record(call) for call in calls]
    again = [log.record(call) for call in calls]
    assert ids == again
    with sessions() as session:
        rows = {row.linkedid: row for row in session.query(Call).all()}
    assert len(rows) == 2
    inbound = rows[calls[0].linkedid]
    assert (inbound.direction, inbound.caller, inbound.callee) == (
        "inbound",
        "+8613800138000",
        "+864008001234",
    )
    assert (inbound.agent, inbound.queue, inbound.disposition) == ("1001", "support", "answered")
    assert inbound.customer_id == zhang
    assert inbound.server == "pbx1"
    assert inbound.wait_seconds == pytest.approx(2.0, abs=0.5)
    assert inbound.offered_at.tzinfo is not None
    outbound = rows[calls[1].linkedid]
    assert (outbound.direction, outbound.callee, outbound.disposition) == (
        "outbound",
        "+8613900000001",
        "answered",
    )
    assert outbound.campaign == "return-visit-2024w47"


def test_a_family_phone_links_no_single_customer(sessions):
    add_customer(sessions, "C0002", "李四", "+8613800138000")
    add_customer(sessions, "C0003", "李小四", "+8613800138000")
    log = CallLog(sessions, NumberRules("CN"))
    (call,) = tracked_calls("b_inbound_abandoned")
    call_id = log.record(call)
    with sessions() as session:
        row = session.get(Call, call_id)
        assert row.customer_id is None
        assert row.disposition == "abandoned"


def test_list_calls_filters_and_pages(sessions):
    log = CallLog(sessions, NumberRules("CN"))
    for call in tracked_calls(
        "a_inbound_answered_1001",
        "b_inbound_abandoned",
        "c_inbound_1001_noanswer_1002_answers",
        "e1_outbound_busy",
        "e2_outbound_noanswer",
    ):
        log.record(call)
    with sessions() as session:
        rows, total = list_calls(session, CallFilter(), limit=2, offset=0)
        assert total == 5 and len(rows) == 2
        assert rows[0].offered_at >= rows[1].offered_at
        _, abandoned = list_calls(session, CallFilter(disposition="abandoned"), 10, 0)
        assert abandoned == 1
        by_agent, _ = list_calls(session, CallFilter(agent="1002"), 10, 0)
        assert [r.agent for r in by_agent] == ["1002"]
        by_number, _ = list_calls(session, CallFilter(number="+8613900000002"), 10, 0)
        assert [r.disposition for r in by_number] == ["busy"]
        outbound, _ = list_calls(session, CallFilter(direction="outbound"), 10, 0)
        assert {r.disposition for r in outbound} == {"busy", "no_answer"}


def test_a_call_whose_linkedid_another_server_logged_is_reported(sessions, caplog):
    """Two Asterisks without distinct ``systemname`` give their calls the same ids: the second
    call cannot be logged, and the log says why."""
    (first,) = tracked_calls("a_inbound_answered_1001")
    log = CallLog(sessions, NumberRules("CN"))
    first_id = log.record(first)
    assert log.record(first) == first_id
    assert not [r for r in caplog.records if r.levelname == "ERROR"]

    first.server = "pbx2"
    assert log.record(first) == first_id
    (error,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "pbx2" in error.getMessage() and "systemname" in error.getMessage()
    with sessions() as session:
        assert session.query(Call).count() == 1
