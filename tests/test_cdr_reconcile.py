"""Calls rebuilt from Asterisk's own CDRs (``crm_bridge/calls/cdr_reconcile.py``), on lines the PBX
kit's Asterisk 22 wrote with ``dialplans/cdr_custom.conf`` (the abandoned call is made up in
the same shape), and the reconciler on a real file
and a real SQLite database: each missing call logged once, marked reconciled, a logged or
skipped one left alone, a torn last line left for the next read. (Calls that end while the
service is down, on the real Asterisk: ``tests/test_cdr_reconcile_realpbx.py``.)"""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from test_pops import AMI_SECRET, seed, served, site_settings

from crm_bridge.app import create_app
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.cdr_reconcile import Cdr, CdrReconciler, Dialled, call_from_cdrs
from crm_bridge.db.models import Call, Campaign, Customer, CustomerPhone, DialAttempt
from telephony.call_events import Direction, Disposition
from telephony.simulator import AmiSimulator

INBOUND = """\
"1796292685.19","1796292685.19","1796292685.788807","1796292685.789464","1796292689.792053","ANSWERED","13800138000","4008001234","from-customers","PJSIP/carrier-00000005","Local/1002@agents-00000002;1","Queue","support,,,,3600","inbound;cid=13800138000","/var/spool/asterisk/monitor/1796292685.19.wav",""
"1796292685.19","1796292685.21","1796292685.812701","1796292687.817272","1796292689.792628","ANSWERED","13800138000","1002","agents","Local/1002@agents-00000002;2","PJSIP/1002-00000006","Dial","PJSIP/1002,,i","","",""
"""  # noqa: E501
BUSY = """\
"kit-out-1796292690607","kit-out-1796292690607","1796292690.611070","0.000000","1796292690.613256","BUSY","4008001234","s","from-customers","PJSIP/carrier-00000007","","AppDial2","(Outgoing Line)","","",""
"""  # noqa: E501
AGENT_CAMPAIGN = """\
"kit-out-1796292691717","1796292693.33","1796292693.731110","1796292695.736463","1796292705.475008","ANSWERED","4008001234","1001","agents","Local/1001@agents-00000003;2","PJSIP/1001-0000000a","Dial","PJSIP/1001,,i","","",""
"kit-out-1796292691717","kit-out-1796292691717","1796292691.722853","1796292693.728086","1796292705.476966","ANSWERED","4008001234","return-visit","outbound-campaign","PJSIP/carrier-00000009","Local/1001@agents-00000003;1","Queue","support,,,,120","outbound;campaign=5;customer=0","/var/spool/asterisk/monitor/kit-out-1796292691717.wav","5"
"""  # noqa: E501
ABANDONED = """\
"1796300000.1","1796300000.1","1796300000.100000","1796300000.110000","1796300009.000000","ANSWERED","13800138001","4008001234","from-customers","PJSIP/carrier-00000011","Local/1001@agents-00000009;1","Queue","support,,,,3600","inbound;cid=13800138001","",""
"1796300000.1","1796300000.3","1796300000.200000","0.000000","1796300008.000000","NO ANSWER","13800138001","1001","agents","Local/1001@agents-00000009;2","PJSIP/1001-00000012","Dial","PJSIP/1001,,i","","",""
"""  # noqa: E501
AGENTS = ("internal", "from-internal")


def cdrs(text: str) -> list[Cdr]:
    return [c for c in map(Cdr.parse, csv.reader(io.StringIO(text))) if c is not None]


def test_an_inbound_call_answered_by_an_agent():
    call = call_from_cdrs(cdrs(INBOUND), "default", AGENTS, None)
    assert (call.linkedid, call.direction, call.disposition) == (
        "1796292685.19", Direction.INBOUND, Disposition.ANSWERED
    )  # fmt: skip
    assert (call.caller, call.callee, call.queue) == ("13800138000", "4008001234", "support")
    assert (call.agent, call.agent_interface, call.agents_rung) == ("1002", "PJSIP/1002", ["1002"])
    assert call.wait_seconds == pytest.approx(2.028, abs=0.001)  # the agent's answer
    assert call.talk_seconds == pytest.approx(1.975, abs=0.001)
    assert call.recording_path == "/var/spool/asterisk/monitor/1796292685.19.wav"


def test_an_inbound_call_nobody_answered_is_abandoned():
    call = call_from_cdrs(cdrs(ABANDONED), "default", AGENTS, None)
    assert (call.disposition, call.agent, call.agents_rung) == (
        Disposition.ABANDONED, None, ["1001"]
    )  # fmt: skip
    assert call.talk_seconds == 0.0 and call.wait_seconds == pytest.approx(8.9)


def test_campaign_calls_take_the_attempts_number_and_their_real_outcome():
    busy = call_from_cdrs(cdrs(BUSY), "default", AGENTS, Dialled("+8613900000002", 5))
    assert (busy.direction, busy.disposition, busy.callee, busy.campaign) == (
        Direction.OUTBOUND, Disposition.BUSY, "+8613900000002", "5"
    )  # fmt: skip
    assert busy.answered_at is None and busy.talk_seconds == 0.0
    agent = call_from_cdrs(cdrs(AGENT_CAMPAIGN), "default", AGENTS, Dialled("+8613900000001", 5))
    assert (agent.disposition, agent.agent, agent.queue, agent.campaign) == (
        Disposition.ANSWERED, "1001", "support", "5"
    )  # fmt: skip
    assert agent.answered_at == pytest.approx(1796292693.728086)  # the customer's answer


def test_lines_not_in_our_format_are_skipped():
    assert Cdr.parse(["a", "b"]) is None
    assert Cdr.parse(next(csv.reader([BUSY.replace('"0.000000"', '"soon"')]))) is None


@pytest.fixture
def logged(sqlite_sessions):
    with sqlite_sessions.begin() as session:
        customer = Customer(card_no="R1", name="客户", phones=[
            CustomerPhone(number_e164="+8613900000002")])  # fmt: skip
        campaign = Campaign(name="回访", kind="return_visit", mode="agent", rules=[], policy={})
        session.add_all([customer, campaign])
        session.flush()
        session.add(DialAttempt(
            campaign_id=campaign.id, customer_id=customer.id, attempt_no=1,
            number_e164="+8613900000002", action_id="a-1",
            channel_id="kit-out-1796292690607", created_at=datetime.now(UTC),
        ))  # fmt: skip
    return sqlite_sessions


def test_the_reconciler_logs_each_missing_call_once(logged, tmp_path):
    path = tmp_path / "callbridge.csv"
    path.write_text(INBOUND + BUSY + ABANDONED[:30])  # a last line Asterisk is still writing
    reconcile = CdrReconciler(
        path, "default", logged, CallLog(logged, NumberRules("CN")),
        agent_contexts=AGENTS, lookback_seconds=10 * 365 * 86400,
    )  # fmt: skip
    after_all = 1796400000.0
    assert reconcile(after_all, skip={"1796292685.19"}) == 1  # the inbound one was seen live
    with logged() as session:
        (busy,) = session.scalars(select(Call)).all()
    assert (busy.linkedid, busy.disposition, busy.reconciled) == (
        "kit-out-1796292690607", "busy", True
    )  # fmt: skip
    assert (busy.callee, busy.customer_id, busy.campaign) == ("+8613900000002", 1, "1")

    with path.open("a") as f:  # the torn line completed, and the call seen live after all
        f.write(ABANDONED[30:] + AGENT_CAMPAIGN)
    assert reconcile(1796292700.0, skip=set()) == 0  # that campaign call ended after the connect
    assert reconcile(after_all, skip=set()) == 0  # read already: nothing twice
    fresh = CdrReconciler(
        path, "default", logged, CallLog(logged, NumberRules("CN")),
        agent_contexts=AGENTS, lookback_seconds=10 * 365 * 86400,
    )  # fmt: skip
    assert fresh(after_all, skip=set()) == 3  # a new start: inbound, abandoned, agent campaign
    with logged() as session:
        rows = {c.linkedid: c for c in session.scalars(select(Call))}
    assert len(rows) == 4 and all(c.reconciled for c in rows.values())
    assert rows["1796300000.1"].disposition == "abandoned"


async def test_after_every_reconnect_the_calls_ended_meanwhile_are_logged(tmp_path):
    """The service running, its AMI connection lost (the simulator over a real socket) while
    a call ends: once back in step the call is in the call log, reconciled."""
    cdr_file = tmp_path / "callbridge.csv"
    cdr_file.write_text("")
    async with AmiSimulator(username="bridge", secret=AMI_SECRET) as sim:
        settings = site_settings(tmp_path, sim.port).model_copy(update={"pbx_cdr_file": cdr_file})
        seed(settings.database_url)
        app = create_app(settings)
        async with served(app):
            bridge = app.state.runtime.bridge
            assert await bridge.wait_connected(timeout=10)
            away = asyncio.create_task(sim.restart(down_seconds=2.0))
            await asyncio.sleep(0.3)
            ended = int(time.time())  # rung, answered and hung up while the bridge was away
            with cdr_file.open("a") as f:  # (each time below is this second + under 0.8 s)
                f.write(INBOUND.replace("1796292685", str(ended - 4))
                        .replace("1796292687", str(ended - 2))
                        .replace("1796292689", str(ended)))  # fmt: skip
            await away
            await asyncio.sleep(0.2)
            assert await bridge.wait_connected(timeout=10)
            with app.state.runtime.sessions() as session:
                (call,) = session.scalars(select(Call)).all()
    assert (call.linkedid, call.reconciled) == (f"{ended - 4}.19", True)
    assert (call.agent, call.disposition) == ("1002", "answered")
