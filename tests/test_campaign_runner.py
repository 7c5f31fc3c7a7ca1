"""The campaign runner end to end: real SQLite, the AMI simulator over a real socket, the
bridge writing the call log. Stopping the runner mid-campaign and starting another on the same
database dials nobody twice and forgets nobody; pause and stop take effect at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from crm_bridge.calls.bridge import BridgeService
from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.campaigns import store as store
from crm_bridge.campaigns.runner import (
    TICK_SECONDS,
    CampaignRunner,
    campaign_request,
    dial_string,
)
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignTarget,
    Customer,
    CustomerPhone,
    DialAttempt,
)
from telephony.ami_connection import AmiConfig
from telephony.call_tracker import TrackerPolicy
from telephony.dialer import Dialer
from telephony.simulator import AmiSimulator

SECRET = "runner-test-secret"
TZ = "Asia/Shanghai"
ALL_DAY = {
    "start": "00:00",
    "end": "00:00",
    "max_attempts": 3,
    "retry_minutes": {"busy": 0, "no_answer": 0, "congestion": 0, "lost": 0},
}
BUSY_NUMBERS = {"13900000105"}


def outcome_by_number(headers: Mapping[str, str]) -> str:
    number = headers.get("Channel", "").removeprefix("PJSIP/").split("@")[0]
    return "busy" if number in BUSY_NUMBERS else "answered"


def dialled(sim: AmiSimulator) -> list[str]:
    return [
        a["Channel"].removeprefix("PJSIP/").split("@")[0] for a in sim.actions_named("Originate")
    ]


async def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


class Rig:
    """Simulator, bridge (call log) and a database; runners come and go."""

    def __init__(self, sim: AmiSimulator, sessions, bridge: BridgeService) -> None:
        self.sim, self.sessions, self.bridge = sim, sessions, bridge
        self.config = AmiConfig(
            host="127.0.0.1", port=sim.port, username="bridge", secret=SECRET, events="call"
        )

    async def runner(self, cps: float = 20, max_concurrent: int = 3) -> CampaignRunner:
        dialer = Dialer(self.config, max_concurrent=max_concurrent, calls_per_second=cps)
        await dialer.start()
        assert await dialer.wait_connected(5)
        runner = CampaignRunner(
            self.sessions, dialer, center_timezone=TZ, region="CN", grace=timedelta(seconds=2)
        )
        await runner.start()
        return runner

    def campaign(self, count: int, mode: str = "message") -> int:
        with self.sessions.begin() as session:
            for i in range(count):
                session.add(
                    Customer(
                        card_no=f"R{i:04d}",
                        name=f"客户{i}",
                        phones=[CustomerPhone(number_e164=f"+86139{100 + i:08d}")],
                    )
                )
            campaign = Campaign(
                name="回访",
                kind="return_visit",
                mode=mode,
                greeting_file="greeting.wav" if mode == "message" else None,
                policy=ALL_DAY,
                rules=[{"kind": "uploaded", "entries": [f"R{i:04d}" for i in range(count)]}],
            )
            session.add(campaign)
            session.flush()
            store.start_campaign(session, campaign.id, datetime.now(UTC), ZoneInfo(TZ), "CN")
            return campaign.id

    def status(self, campaign_id: int) -> str:
        with self.sessions() as session:
            return session.get(Campaign, campaign_id).status

    def set_status(self, campaign_id: int, action: str) -> None:
        with self.sessions.begin() as session:
            store.set_status(session, campaign_id, action, datetime.now(UTC))


@pytest.fixture
async def rig(sqlite_url) -> AsyncIterator[Rig]:
    upgrade(sqlite_url)
    engine = make_engine(sqlite_url)
    sessions = make_session_factory(engine)
    async with AmiSimulator(
        secret=SECRET, originate_outcome=outcome_by_number, originate_speed=50
    ) as sim:
        config = AmiConfig(host="127.0.0.1", port=sim.port, username="bridge", secret=SECRET)
        policy = TrackerPolicy(
            inbound_contexts=frozenset({"from-customers"}), agent_contexts=frozenset({"internal"})
        )
        bridge = BridgeService([config], CallLog(sessions, NumberRules("CN")), policy)
        await bridge.start()
        assert await bridge.wait_connected(5)
        yield Rig(sim, sessions, bridge)
        await bridge.stop()
    engine.dispose()


def test_dial_strings():
    assert dial_string("+8613900000001", "CN") == "13900000001"
    assert dial_string("+861012345678", "CN") == "01012345678"
    assert dial_string("+14155550123", "CN") == "0014155550123"


def test_message_calls_say_what_to_do_on_an_answering_machine():
    ticket = store.Ticket(1, 7, 42, 1, "+8613900000001", "cmp-7-42-1", "chan-1")
    message = Campaign(id=7, kind="birthday", mode="message", greeting_file="g.wav",
                       policy={"on_machine": "message"})  # fmt: skip
    variables = campaign_request(message, ticket, "CN").variables
    assert (variables["CC_ON_MACHINE"], variables["CC_MODE"]) == ("message", "message")
    assert campaign_request(message, ticket, "CN").plays_greeting
    unset = Campaign(id=7, kind="birthday", mode="message", greeting_file="g.wav", policy={})
    assert campaign_request(unset, ticket, "CN").variables["CC_ON_MACHINE"] == "hang_up"
    agent = Campaign(id=7, kind="return_visit", mode="agent", policy={"on_machine": "message"})
    assert "CC_ON_MACHINE" not in campaign_request(agent, ticket, "CN").variables


async def test_a_restart_mid_campaign_dials_nobody_twice_and_forgets_nobody(rig: Rig):
    campaign_id = rig.campaign(12)
    first = await rig.runner(cps=10)
    await until(lambda: len(dialled(rig.sim)) >= 4)
    await first.stop()  # the service goes down mid-campaign...
    await first.dialer.stop()
    stopped_after = len(dialled(rig.sim))
    assert stopped_after < 12
    second = await rig.runner(cps=10)  # ...and comes back on the same database
    try:
        await until(lambda: rig.status(campaign_id) == "done")
    finally:
        await second.stop()
        await second.dialer.stop()
    calls = Counter(dialled(rig.sim))
    expected = {f"139{100 + i:08d}" for i in range(12)}
    assert set(calls) == expected
    busy = {n: c for n, c in calls.items() if n in BUSY_NUMBERS}
    assert busy == {"13900000105": 3}  # busy: retried up to the 3 attempts
    assert all(c == 1 for n, c in calls.items() if n not in BUSY_NUMBERS)
    with rig.sessions() as session:
        states = Counter(session.scalars(select(CampaignTarget.state)))
        assert states == {"done": 11, "failed": 1}
        progress = store.progress(session, campaign_id)
        assert progress.by_outcome["answered"] == 11 and progress.by_outcome["busy"] == 3
    await rig.bridge.drain()
    await until(lambda: _logged(rig) >= 11, timeout=10)
    with rig.sessions() as session:
        answered = session.scalars(select(Call).where(Call.disposition == "answered")).all()
        assert {c.campaign for c in answered} == {str(campaign_id)}
        assert all(c.customer_id is not None and c.direction == "outbound" for c in answered)


def _logged(rig: Rig) -> int:
    with rig.sessions() as session:
        return len(session.scalars(select(Call.id).where(Call.disposition == "answered")).all())


async def test_pause_resume_and_stop_take_effect_at_once(rig: Rig):
    campaign_id = rig.campaign(20)
    runner = await rig.runner(cps=4, max_concurrent=2)
    try:
        await until(lambda: len(dialled(rig.sim)) >= 2)
        rig.set_status(campaign_id, "pause")
        await asyncio.sleep(1.0)  # within a second, and then nothing more
        paused_at = len(dialled(rig.sim))
        await asyncio.sleep(1.0)
        assert len(dialled(rig.sim)) == paused_at < 20
        with rig.sessions() as session:  # nothing claimed and left hanging
            assert not store.unresolved_attempts(session)
        rig.set_status(campaign_id, "resume")
        await until(lambda: len(dialled(rig.sim)) >= paused_at + 2)
        rig.set_status(campaign_id, "stop")
        await asyncio.sleep(1.0)
        stopped_at = len(dialled(rig.sim))
        await asyncio.sleep(1.0)
        assert len(dialled(rig.sim)) == stopped_at < 20
    finally:
        await runner.stop()
        await runner.dialer.stop()
    assert len(set(dialled(rig.sim))) == len(dialled(rig.sim))


async def test_preview_campaigns_are_not_dialled_by_the_runner(rig: Rig):
    campaign_id = rig.campaign(2, mode="preview")
    runner = await rig.runner()
    try:
        await asyncio.sleep(1.0)
    finally:
        await runner.stop()
        await runner.dialer.stop()
    assert dialled(rig.sim) == []
    assert rig.status(campaign_id) == "running"


async def test_no_attempt_is_settled_lost_while_the_calls_in_progress_are_unknown(rig: Rig):
    """A previous run's attempt, past the grace period and not in the call log: while the
    bridge is not in step with Asterisk (``calls_in_progress`` gives None) its call may still
    be going, so it waits; once the calls in progress are known and it is not among them, it
    is settled as lost."""
    campaign_id = rig.campaign(1)
    with rig.sessions() as session:
        (target_id,) = session.scalars(select(CampaignTarget.id))
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    assert store.claim_attempt(rig.sessions, target_id, long_ago, TZ) is not None
    rig.set_status(campaign_id, "pause")  # nothing new is dialled meanwhile

    known: list[frozenset[str] | None] = [None]
    dialer = Dialer(rig.config, max_concurrent=1, calls_per_second=20)
    await dialer.start()
    assert await dialer.wait_connected(5)
    runner = CampaignRunner(
        rig.sessions, dialer, center_timezone=TZ, region="CN",
        grace=timedelta(seconds=2), calls_in_progress=lambda: known[0],
    )  # fmt: skip
    try:
        for _ in range(4):
            await runner.tick()
        assert outcomes(rig) == [None]
        known[0] = frozenset()
        await runner.tick()
        assert outcomes(rig) == ["lost"]
    finally:
        await dialer.stop()


def outcomes(rig: Rig) -> list[str | None]:
    with rig.sessions() as session:
        return list(session.scalars(select(DialAttempt.outcome).order_by(DialAttempt.id)))


async def test_a_failing_tick_is_logged_once_not_four_times_a_second(rig: Rig, caplog, tmp_path):
    broken = make_session_factory(make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}"))
    dialer = Dialer(rig.config, max_concurrent=1, calls_per_second=20)
    await dialer.start()
    assert await dialer.wait_connected(5)
    runner = CampaignRunner(broken, dialer, center_timezone=TZ, region="CN")
    await runner.start()
    try:
        await asyncio.sleep(8 * TICK_SECONDS)
    finally:
        await runner.stop()
        await dialer.stop()
    failures = [r for r in caplog.records if r.name == "crm_bridge.campaigns.runner"]
    assert len(failures) == 1 and failures[0].exc_info is not None
