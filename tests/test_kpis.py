"""The KPIs against the real recorded calls: the traces in telephony/traces/sip fed through the
call tracker and the call log, on SQLite and PostgreSQL, checked against numbers worked out by
hand from the calls the traces hold (listed in ``TRACE_CALLS``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.supervision.kpis import Period, campaign_results, inbound_kpis
from telephony.call_events import CallEnded
from telephony.call_tracker import CallTracker
from telephony.trace_files import RECORDED_TRACES, load_trace

SHANGHAI = ZoneInfo("Asia/Shanghai")
TRACES = (
    "a_inbound_answered_1001",
    "b_inbound_abandoned",
    "c_inbound_1001_noanswer_1002_answers",
    "d_outbound_return_visit_answered",
    "e1_outbound_busy",
    "e2_outbound_noanswer",
    "e3_outbound_congestion",
    "f_inbound_5_concurrent",
    "h1_blind_transfer_1001_to_1002",
)
TRACE_CALLS = """
What the traces hold (all offered on 2026-11-22 around 19:25-19:28 in Shanghai):

trace  direction  caller        agent  outcome    wait s  talk s
a      inbound    13800138000   1001   answered    2.035   5.972
b      inbound    13800138000   -      abandoned   6.006   0
c      inbound    13800138000   1002   answered   14.037   8.535
d      outbound   (campaign return-visit-2024w47)  answered  7.383 talk
e1/e2/e3 outbound (same campaign)  busy / no_answer / failed
f      inbound    13800138001   1001   answered    2.032   8.534
f      inbound    13800138002   1002   answered    2.031   8.535
f      inbound    13800138003   1001   answered   13.045   8.541
f      inbound    13800138004   1002   answered   13.049   8.536
f      inbound    13800138005   1001   answered   24.051   8.544
h1     inbound    13800138000   1001   answered    2.041  19.566
"""
DAY = Period(
    datetime(2026, 11, 21, 16, tzinfo=UTC), datetime(2026, 11, 22, 16, tzinfo=UTC), SHANGHAI
)


def traced_calls() -> list:
    tracker = CallTracker(server="pbx1")
    events = []
    for name in TRACES:
        events += tracker.feed_all(load_trace(RECORDED_TRACES / "sip" / f"{name}.ami").events)
    return [event.call for event in events if isinstance(event, CallEnded)]


@pytest.fixture
def logged(db_sessions):
    log = CallLog(db_sessions, NumberRules("CN"))
    for call in traced_calls():
        log.record(call)
    return db_sessions


def test_the_day_of_the_traces(logged):
    with logged() as session:
        (day,) = inbound_kpis(session, "day", DAY)
    assert day.key == "2026-11-22"
    assert (day.offered, day.answered, day.abandoned) == (9, 8, 1)
    assert day.answer_rate == pytest.approx(8 / 9)
    assert day.abandon_rate == pytest.approx(1 / 9)
    # ASA: the eight waits of the answered calls; AHT: their talk times
    assert day.asa_seconds == pytest.approx(72.321 / 8, abs=1e-6)
    assert day.aht_seconds == pytest.approx(76.763 / 8, abs=1e-6)
    # within 20 s: all answered calls but the fifth of trace f (24.051 s)
    assert day.service_level == pytest.approx(7 / 9)
    # 13800138000 calls again after a and after c (b, c and h1 follow a; h1 follows c):
    # of the eight answered calls, a and c are not resolved at first contact
    assert (day.fcr_base, day.fcr_resolved) == (8, 6)


def test_per_agent_and_per_queue(logged):
    with logged() as session:
        agents = {row.key: row for row in inbound_kpis(session, "agent", DAY)}
        (queue,) = inbound_kpis(session, "queue", DAY)
    assert set(agents) == {"1001", "1002", "—"}
    a1001, a1002, nobody = agents["1001"], agents["1002"], agents["—"]
    assert (a1001.offered, a1001.answered, a1001.answered_in_threshold) == (5, 5, 4)
    assert a1001.asa_seconds == pytest.approx(43.204 / 5, abs=1e-6)
    assert (a1001.fcr_base, a1001.fcr_resolved) == (5, 4)
    assert (a1002.offered, a1002.answered, a1002.fcr_resolved) == (3, 3, 2)
    assert (nobody.offered, nobody.abandoned, nobody.answered) == (1, 1, 0)
    assert (queue.key, queue.offered, queue.answered) == ("support", 9, 8)


def test_the_threshold_and_the_window_are_the_supervisors(logged):
    with logged() as session:
        (strict,) = inbound_kpis(session, "day", DAY, threshold_seconds=10, fcr_window_hours=1)
    # within 10 s: a, h1 and the first two of f
    assert strict.answered_in_threshold == 4
    # the traces span three minutes, so a one-hour window still sees the repeats
    assert strict.fcr_resolved == 6


def test_days_follow_the_centers_calendar(db_sessions):
    log = CallLog(db_sessions, NumberRules("CN"))
    calls = [c for c in traced_calls() if c.disposition and c.direction == "inbound"][:2]
    # the same two calls again, moved to 23:59:59 and 00:00:01 Shanghai time on a later day
    late = datetime(2026, 11, 24, 15, 59, 59, tzinfo=UTC).timestamp()
    for n, (call, moment) in enumerate(zip(calls, (late, late + 2), strict=True)):
        shift = moment - call.offered_at
        log.record(dataclasses.replace(
            call, linkedid=f"moved-{n}", offered_at=moment,
            answered_at=call.answered_at and call.answered_at + shift,
            ended_at=call.ended_at and call.ended_at + shift,
        ))  # fmt: skip
    week = Period(DAY.since, datetime(2026, 12, 1, tzinfo=UTC), SHANGHAI)
    with db_sessions() as session:
        days = [(row.key, row.offered) for row in inbound_kpis(session, "day", week)]
    assert days == [("2026-11-24", 1), ("2026-11-25", 1)]


def test_campaign_results(logged):
    with logged() as session:
        (campaign,) = campaign_results(session, DAY)
    assert campaign.campaign == "return-visit-2024w47"
    assert (campaign.attempts, campaign.answered, campaign.busy) == (4, 1, 1)
    assert (campaign.no_answer, campaign.failed) == (1, 1)
    assert campaign.answer_rate == pytest.approx(0.25)


# ------------------------------------------------------------------------------- the page


@pytest.fixture
async def site(tmp_path, monkeypatch):
    from test_pops import CHEAP_ARGON2, running_site

    from crm_bridge.accounts import users

    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    async with running_site(tmp_path) as running:
        log = CallLog(running.sessions(), NumberRules("CN"))
        for call in traced_calls():
            log.record(call)
        yield running


PERIOD = {"since": "2026-11-22", "until": "2026-11-22"}


async def test_the_page_shows_tables_and_charts_and_every_table_exports(site):
    import csv
    import io

    from openpyxl import load_workbook
    from sqlalchemy import select

    from crm_bridge.db.models import AuditEntry

    async with site.signed_in("lin") as lin:
        page = await lin.get("/supervisor/kpis", params=PERIOD)
        assert page.status_code == 200
        html = page.text
        assert html.count("<svg") == 2 and "<polyline" in html
        assert "88.9%" in html and "77.8%" in html and "75.0%" in html
        assert "return-visit-2024w47" in html
        for table in ("day", "agent", "queue", "campaigns"):
            assert f'id="kpi-{table}"' in html
            xlsx = await lin.get("/supervisor/kpis/export",
                                 params={**PERIOD, "table": table, "format": "xlsx"})  # fmt: skip
            assert xlsx.status_code == 200
            assert "attachment" in xlsx.headers["content-disposition"]
            sheet = load_workbook(io.BytesIO(xlsx.content)).active
            rows = list(sheet.iter_rows(values_only=True))
            text = (await lin.get("/supervisor/kpis/export",
                                  params={**PERIOD, "table": table, "format": "csv"})).content
            assert text.startswith("\ufeff".encode())
            assert [list(r) for r in rows][0] == next(csv.reader(io.StringIO(text.decode()[1:])))
            if table == "day":
                assert rows[1][:4] == ("2026-11-22", 9, 8, 1)
                assert rows[1][4] == pytest.approx(0.8889) and rows[1][8] == pytest.approx(0.75)
    with site.sessions()() as session:
        exports = session.scalars(select(AuditEntry).where(AuditEntry.action == "export")).all()
    assert len(exports) == 8
    assert {(e.subject_id, e.details["format"]) for e in exports} == {
        (t, f) for t in ("day", "agent", "queue", "campaigns") for f in ("xlsx", "csv")
    }
    async with site.signed_in("wang") as wang:
        assert (await wang.get("/supervisor/kpis")).status_code == 403
        export = await wang.get("/supervisor/kpis/export", params={"table": "day", "format": "csv"})
        assert export.status_code == 403


async def test_the_supervisor_sets_the_threshold_and_only_admins_the_retention(site):
    import re

    from test_pops import PASSWORD, hashed

    from crm_bridge.db.models import User
    from crm_bridge.supervision.settings import get_setting

    async with site.signed_in("lin") as lin:
        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          (await lin.get("/supervisor/settings")).text).group(1)  # fmt: skip
        bad = await lin.post("/supervisor/settings",
                             data={"csrf_token": token, "service_level_seconds": "0"})  # fmt: skip
        assert bad.status_code == 400
        saved = await lin.post(
            "/supervisor/settings",
            data={"csrf_token": token, "service_level_seconds": "10",
                  "recording_retention_days": "1"},
        )  # fmt: skip
        assert saved.status_code == 303
        html = (await lin.get("/supervisor/kpis", params=PERIOD)).text
        assert "44.4%" in html  # 4 of 9 within 10 s
    with site.sessions()() as session:
        assert get_setting(session, "recording_retention_days") is None
        session.add(User(username="root", password_hash=hashed(PASSWORD), role="admin"))
        session.commit()
    async with site.signed_in("root") as root:
        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          (await root.get("/supervisor/settings")).text).group(1)  # fmt: skip
        form = {"csrf_token": token, "recording_retention_days": "90"}
        saved = await root.post("/supervisor/settings", data=form)
        assert saved.status_code == 303
    with site.sessions()() as session:
        assert get_setting(session, "recording_retention_days") == 90
        assert get_setting(session, "service_level_seconds") == 10
