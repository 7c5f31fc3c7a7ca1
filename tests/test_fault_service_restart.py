"""The service itself killed (SIGKILL) and started again on the same PostgreSQL database.

``callbridge serve`` runs in its own process, configured by ``CALLBRIDGE_*`` variables, against
the AMI simulator of this process over real TCP; the simulator answers each Originate with a
recorded outbound call (answered, or busy for one number).

- Mid-campaign: nobody is dialled more often than the outcome allows, no attempt is placed
  twice, and an attempt whose call the dead service never saw is settled as documented
  (``crm_bridge/campaigns/store/``: from the call log, else ``lost`` after the grace period,
  here ``CALLBRIDGE_CAMPAIGN_UNRESOLVED_GRACE_SECONDS=3``, and tried again). The scheduler's
  page and ``/health`` say the right thing after the restart.
- While PostgreSQL is away (reached through a relay that the test cuts): the calls that end are
  kept in the ended-call journal (``crm_bridge/calls/journal.py``), so a kill meanwhile loses none
  of them; the next start writes each to the call log once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from test_fault_database import CuttableRelay
from test_pops import PASSWORD, hashed

from crm_bridge.calls.journal import JOURNAL_FILE
from crm_bridge.campaigns import store as store
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignTarget,
    Customer,
    CustomerPhone,
    DialAttempt,
    User,
)
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

pytestmark = pytest.mark.postgres

CALLBRIDGE = Path(sys.executable).with_name("callbridge")
SECRET = "restart-test-secret"
SECRET_KEY = "restart-test-session-key-0123456789"
TARGETS = 12
BUSY = "13900000105"
MAX_ATTEMPTS = 3
POLICY = {
    "start": "00:00",
    "end": "00:00",
    "max_attempts": MAX_ATTEMPTS,
    "retry_minutes": {"busy": 0, "no_answer": 0, "congestion": 0, "lost": 0},
}
FAST, SLOW, BRIEF = 4.0, 0.3, 3.0
"""Replay speeds of the simulator's answered calls (answered after 2 s, hung up after 9.4 s in
the recording). Of the five calls placed before the kill, the first two are answered before it
(FAST), the next two still talk when the service is back (SLOW: 31 s, so even a start-up slowed
by a busy machine is back in time) and the last is answered and hung up while the service is
dead (BRIEF: 0.7 s and 3.1 s)."""
DEAD_SECONDS = 3.0
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
WAIT = 60.0
"""How long something that must happen may take before the test fails (not a speed check)."""


def number_of(i: int) -> str:
    return f"139{100 + i:08d}"


def dialled_number(headers: Mapping[str, str]) -> str:
    return headers.get("Channel", "").removeprefix("PJSIP/").split("@")[0]


def outcome_by_number(headers: Mapping[str, str]) -> str:
    return "busy" if dialled_number(headers) == BUSY else "answered"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def until(predicate, what: str, timeout: float = WAIT) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await predicate():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"waited {timeout:.0f} s for {what}") from None


class Service:
    """``callbridge serve`` in a process of its own; each :meth:`start` is a new process on
    the same port, database and data folder."""

    def __init__(self, workdir: Path, database_url: str, ami_port: int, **extra: str) -> None:
        self.workdir = workdir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
        self.env.update(
            CALLBRIDGE_DATABASE_URL=database_url,
            CALLBRIDGE_DATA_DIR=str(workdir / "data"),
            CALLBRIDGE_AMI_HOST="127.0.0.1",
            CALLBRIDGE_AMI_PORT=str(ami_port),
            CALLBRIDGE_AMI_USERNAME="bridge",
            CALLBRIDGE_AMI_SECRET=SECRET,
            CALLBRIDGE_ROUTING_PORT="0",  # any free port: tests run side by side
            CALLBRIDGE_API_TOKEN="restart-test-api-token",
            CALLBRIDGE_SECRET_KEY=SECRET_KEY,
            **{f"CALLBRIDGE_{k.upper()}": v for k, v in extra.items()},
        )
        self.process: asyncio.subprocess.Process | None = None
        self.port = free_port()
        self.origin = f"http://127.0.0.1:{self.port}"
        self.runs = 0

    @property
    def journal(self) -> Path:
        return self.workdir / "data" / "journal" / JOURNAL_FILE

    async def start(self) -> None:
        self.runs += 1
        with open(self.workdir / f"serve-{self.runs}.log", "wb") as output:
            self.process = await asyncio.create_subprocess_exec(
                str(CALLBRIDGE), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                cwd=self.workdir, env=self.env, stdout=output, stderr=output,
            )  # fmt: skip
        try:
            await until(self._healthy, "the service to start")
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.log_tail()}") from None

    async def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"service exited:\n{self.log_tail()}")
        return (await self.health()).get("status") == "ok"

    async def health(self) -> dict:
        try:
            async with httpx.AsyncClient(base_url=self.origin, timeout=5) as client:
                return (await client.get("/health")).json()
        except httpx.HTTPError:
            return {}

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                await self.kill()

    def log_tail(self) -> str:
        text = (self.workdir / f"serve-{self.runs}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-40:])


@contextlib.asynccontextmanager
async def signed_in(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """A scheduler signed in through the form, with the session cookie the browser would keep."""
    async with httpx.AsyncClient(base_url=service.origin, timeout=10) as client:
        page = await client.get("/login")
        token = CSRF_RE.search(page.text).group(1)
        form = {"username": "zhou", "password": PASSWORD, "csrf_token": token, "next": ""}
        assert (await client.post("/login", data=form)).status_code == 303
        yield client


def seed(database_url: str) -> int:
    """A scheduler, the customers and a draft campaign calling them all; returns its id."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with make_session_factory(engine).begin() as session:
            session.add(User(username="zhou", password_hash=hashed(PASSWORD), role="scheduler"))
            for i in range(TARGETS):
                session.add(
                    Customer(
                        card_no=f"R{i:04d}",
                        name=f"客户{i}",
                        phones=[CustomerPhone(number_e164=f"+86{number_of(i)}")],
                    )
                )
            campaign = Campaign(
                name="回访",
                kind="return_visit",
                mode="message",
                greeting_file="greeting.wav",
                policy=POLICY,
                rules=[{"kind": "uploaded", "entries": [f"R{i:04d}" for i in range(TARGETS)]}],
            )
            session.add(campaign)
            session.flush()
            return campaign.id
    finally:
        engine.dispose()


class Database:
    """Direct reads of what the service wrote."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)

    def progress(self, campaign_id: int) -> store.Progress:
        with self.sessions() as session:
            return store.progress(session, campaign_id)

    def attempts(self) -> list[DialAttempt]:
        with self.sessions() as session:
            return list(session.scalars(select(DialAttempt).order_by(DialAttempt.id)))

    def calls(self) -> list[Call]:
        with self.sessions() as session:
            return list(session.scalars(select(Call)))

    def numbers_by_customer(self) -> dict[int, str]:
        with self.sessions() as session:
            rows = session.execute(select(CustomerPhone.customer_id, CustomerPhone.number_e164))
            return {cid: e164.removeprefix("+86") for cid, e164 in rows}

    def target_states(self) -> dict[int, str]:
        with self.sessions() as session:
            rows = session.execute(select(CampaignTarget.customer_id, CampaignTarget.state))
            return dict(rows.all())


async def test_a_service_killed_mid_campaign_carries_on_after_a_restart(pg_url, tmp_path):
    campaign_id = seed(pg_url)
    db = Database(pg_url)
    async with AmiSimulator(
        secret=SECRET, originate_outcome=outcome_by_number, originate_speed=FAST
    ) as sim:
        service = Service(
            tmp_path,
            pg_url,
            sim.port,
            campaign_calls_per_second="2",
            campaign_max_concurrent="4",
            campaign_unresolved_grace_seconds="3",
        )
        try:
            await service.start()
            async with signed_in(service) as scheduler:
                page = await scheduler.get(f"/campaigns/{campaign_id}")
                csrf = CSRF_RE.search(page.text).group(1)
                started = await scheduler.post(
                    f"/campaigns/{campaign_id}/action",
                    data={"action": "start"},
                    headers={"X-CSRF-Token": csrf},
                )
                assert started.status_code == 303
                await until(lambda: _at_least(sim, 2), "two calls placed")
                sim.originate_speed = SLOW
                await until(lambda: _at_least(sim, 4), "four calls placed")
                sim.originate_speed = BRIEF
                await until(lambda: _at_least(sim, 5), "five calls placed")
                await service.kill()  # mid-campaign, calls ringing and talking
                sim.originate_speed = FAST
                placed_before = len(sim.actions_named("Originate"))
                made_before = {a.id for a in db.attempts()}
                at_kill = db.progress(campaign_id)
                assert at_kill.status == "running" and at_kill.finished < TARGETS

                await asyncio.sleep(DEAD_SECONDS)  # calls go on ending meanwhile
                await service.start()
                health = await service.health()
                after = (await scheduler.get(f"/campaigns/{campaign_id}/progress")).json()
                page = await scheduler.get(f"/campaigns/{campaign_id}")  # same cookie as before
                print("after restart:", json.dumps({"health": health, "progress": after}))
                assert health["status"] == "ok" and health["database"] == "ok"
                assert health["ami"][0]["calls_in_flight"] >= 1  # found again by the resync
                assert after["status"] == "running" and after["targets"] == TARGETS
                assert after["finished"] >= at_kill.finished  # nothing forgotten
                assert all(after["by_outcome"][k] >= v for k, v in at_kill.by_outcome.items())
                assert page.status_code == 200 and "<strong id=\"status\">进行中<" in page.text
                assert f'<span id="targets">{TARGETS}</span>' in page.text

                async def done() -> bool:
                    got = await scheduler.get(f"/campaigns/{campaign_id}/progress")
                    return got.json()["status"] == "done"

                await until(done, "the campaign to finish")
                final = (await scheduler.get(f"/campaigns/{campaign_id}/progress")).json()
            await _calls_settled(sim)
        finally:
            await service.stop()
        originates = sim.actions_named("Originate")
    try:
        _check_campaign(db, originates, final, placed_before, made_before)
    finally:
        db.engine.dispose()


async def _at_least(sim: AmiSimulator, count: int) -> bool:
    return len(sim.actions_named("Originate")) >= count


async def _calls_settled(sim: AmiSimulator) -> None:
    """Every call the simulator still replays has ended (and its last events have had a moment
    to reach the service, whose stop then writes what it holds)."""

    async def quiet() -> bool:
        return sim.live_channel_count == 0

    await until(quiet, "the simulator's calls to end")
    await asyncio.sleep(1.0)


def _check_campaign(
    db: Database, originates: list[dict], final: dict, placed_before: int, made_before: set[int]
):
    """What the database says once the campaign is done, against what the simulator saw."""
    attempts = db.attempts()
    calls = {c.linkedid: c for c in db.calls()}
    numbers = db.numbers_by_customer()
    by_action = {a.action_id: a for a in attempts}
    sent = Counter(o["ActionID"] for o in originates)
    lost = [a for a in attempts if a.outcome == "lost"]
    placed_and_lost = [a for a in lost if a.action_id in sent]
    print(
        f"{len(originates)} Originates ({placed_before} before the kill), "
        f"{len(attempts)} attempts, {len(lost)} lost of which {len(placed_and_lost)} "
        f"were placed while the service was dead; {len(calls)} calls logged"
    )
    # no attempt inserted twice, none sent twice, nothing sent without an attempt
    assert len({(a.customer_id, a.attempt_no) for a in attempts}) == len(attempts)
    assert all(count == 1 for count in sent.values())
    assert set(sent) <= set(by_action)
    for originate in originates:
        attempt = by_action[originate["ActionID"]]
        assert dialled_number(originate) == numbers[attempt.customer_id]
        assert originate["ChannelId"] == attempt.channel_id
    # each attempt settled by the dialer or from its call in the call log, else lost (never
    # both); only a call that ended while the service was dead is missing from the call log
    for attempt in attempts:
        call = calls.get(attempt.channel_id)
        if attempt.outcome == "lost":
            assert call is None, f"{attempt.action_id} counted lost but its call is logged"
        elif call is None:
            assert attempt.id in made_before, f"{attempt.action_id} not in the call log"
        else:
            assert call.disposition == attempt.outcome
            assert call.customer_id == attempt.customer_id
    assert set(calls) <= {a.channel_id for a in attempts}
    resynced = [a for a in attempts if a.id in made_before and a.channel_id in calls]
    assert resynced, "no call in progress across the restart was followed to its end"
    # each target dialled as often as its outcome allows, lost attempts aside
    counted = Counter(a.customer_id for a in attempts if a.outcome != "lost")
    states = db.target_states()
    for customer_id, number in numbers.items():
        outcomes = [a.outcome for a in attempts if a.customer_id == customer_id]
        if number == BUSY:
            assert counted[customer_id] == MAX_ATTEMPTS and states[customer_id] == "failed"
            assert [o for o in outcomes if o != "lost"] == ["busy"] * MAX_ATTEMPTS
        else:
            assert counted[customer_id] == 1 and states[customer_id] == "done"
            assert outcomes[-1] == "answered"
    assert final["status"] == "done" and final["finished"] == TARGETS
    assert final["by_outcome"]["answered"] == TARGETS - 1
    assert final["by_outcome"]["busy"] == MAX_ATTEMPTS
    assert final["by_outcome"]["lost"] == len(lost)
    with db.sessions() as session:  # every call logged once
        total = session.scalar(select(func.count()).select_from(Call))
        distinct = session.scalar(select(func.count(func.distinct(Call.linkedid))))
    assert total == distinct == len(calls)


async def _play(sim: AmiSimulator, names: list[str]) -> None:
    for name in names:
        await sim.play(load_trace(RECORDED_TRACES / "sip" / f"{name}.ami"), speed=20)


def _journaled(service: Service) -> int:
    """Calls in the journal without a done line."""
    if not service.journal.exists():
        return 0
    lines = [json.loads(line) for line in service.journal.read_text().splitlines()]
    done = {e["done"] for e in lines if "done" in e}
    return len({e["call"]["linkedid"] for e in lines if "call" in e} - done)


async def test_calls_ended_while_the_database_is_away_survive_a_kill(pg_url, tmp_path):
    upgrade(pg_url)
    target = make_url(pg_url)
    relay = CuttableRelay(target.host or "127.0.0.1", target.port or 5432)
    await relay.start()
    relayed = target.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    db = Database(pg_url)
    try:
        async with AmiSimulator(secret=SECRET) as sim:
            service = Service(tmp_path, relayed, sim.port)
            try:
                await service.start()
                await _play(sim, ["a_inbound_answered_1001", "e1_outbound_busy"])
                await until(lambda: _logged_at_least(db, 2), "two calls logged")

                relay.cut()
                await _play(sim, ["b_inbound_abandoned", "f_inbound_5_concurrent"])
                await _play(sim, ["e2_outbound_noanswer"])  # 7 calls end, no database

                async def journaled() -> bool:
                    return _journaled(service) == 7

                await until(journaled, "seven calls in the journal")
                health = await service.health()
                print("database away:", json.dumps(health))
                assert health["status"] == "degraded" and health["database"].startswith("error")
                await service.kill()
                assert _count_calls(db) == 2  # none of the seven reached the database

                relay.restore()
                await service.start()
                await until(lambda: _logged_at_least(db, 9), "the journal written")
                await _play(sim, ["d_outbound_return_visit_answered"])
                await until(lambda: _logged_at_least(db, 10), "a new call logged")
            finally:
                await service.stop()
            log_text = service.log_tail()
        with db.sessions() as session:
            total = session.scalar(select(func.count()).select_from(Call))
            distinct = session.scalar(select(func.count(func.distinct(Call.linkedid))))
            abandoned = session.scalar(
                select(func.count()).select_from(Call).where(Call.disposition == "abandoned")
            )
    finally:
        await relay.stop()
        db.engine.dispose()
    assert total == distinct == 2 + 7 + 1
    assert abandoned >= 1
    assert _journaled(service) == 0
    assert "7 ended call(s) from the journal" in (tmp_path / "serve-2.log").read_text(), log_text


def _count_calls(db: Database) -> int:
    with db.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Call)) or 0)


async def _logged_at_least(db: Database, count: int) -> bool:
    return await asyncio.to_thread(_count_calls, db) >= count
