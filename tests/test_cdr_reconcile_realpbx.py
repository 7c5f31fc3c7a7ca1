"""Nothing lost while callbridge is down, on the real Asterisk of the PBX kit: Asterisk writes
its CDRs with the product's ``dialplans/cdr_custom.conf`` (the kit leaves cdr_custom unloaded,
as it has no use for it; a center's stock modules.conf loads it, so the test loads it), and the
service reads them at start (``crm_bridge/calls/cdr_reconcile.py``).

- A customer's call answered by an agent and ended while the service is stopped is in the call
  log after the start, marked reconciled, with its agent, queue and recording (transcription
  queued); a call the running service saw is logged live; starting again changes neither.
- A campaign call placed just before the service stops and ended while it is down gives its
  attempt the real outcome after the start; the customer is not called again.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from pbx_kit import pbx
from realpbx_site import kit_settings
from sqlalchemy import select
from test_campaigns_realpbx import CUSTOMERS, campaign_form, tone_wav
from test_pops import CHEAP_ARGON2, Site, seed, served

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import (
    Call,
    Customer,
    CustomerPhone,
    DialAttempt,
    Recording,
    TranscriptionJob,
)
from crm_bridge.settings import Settings

pytestmark = pytest.mark.realpbx

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
DOWN_CALLER, LIVE_CALLER = "13800138101", "13800138102"
WAIT = 60.0


@pytest.fixture(scope="module")
def cdr_file(pbx_kit) -> Path:
    """Where the kit's PBX writes the product's CDR file, with cdr_custom loaded."""
    folder = Path(pbx_kit["workdir"]) / "var" / "pbx" / "log" / "cdr-custom"
    folder.mkdir(parents=True, exist_ok=True)  # an Asterisk install creates it
    pbx("rx", "pbx", "module load cdr_custom.so")
    return folder / "callbridge.csv"


def settings_of(pbx_kit, cdr_file: Path, data_dir: Path, **extra) -> Settings:
    """The kit's settings with its CDR file, the greetings folder linked in, short rings."""
    if not (data_dir / "greetings").exists():
        (data_dir / "greetings").symlink_to(pbx_kit["greetings"], target_is_directory=True)
    return kit_settings(data_dir, pbx_kit, pbx_cdr_file=cdr_file, campaign_ring_seconds=6,
                        **extra)  # fmt: skip


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Site]:
    """The service up and in step (connected, resynced, reconciled)."""
    app = create_app(settings)
    async with served(app) as address:
        assert await app.state.runtime.bridge.wait_connected(timeout=WAIT)
        yield Site(None, app, address, settings)


def calls_of(settings: Settings) -> dict[str, Call]:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            calls = session.scalars(select(Call))
            return {(c.caller if c.direction == "inbound" else c.callee): c for c in calls}
    finally:
        engine.dispose()


async def until(check: Callable[[], object], what: str, timeout: float = WAIT):
    try:
        async with asyncio.timeout(timeout):
            while not (found := check()):
                await asyncio.sleep(0.2)
            return found
    except TimeoutError:
        raise AssertionError(f"waited {timeout:.0f} s for {what}") from None


async def test_a_call_that_ends_while_the_service_is_down_is_logged_at_start(
    pbx_kit, pbx_commands, cdr_file, tmp_path, monkeypatch
):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    settings = settings_of(pbx_kit, cdr_file, tmp_path)
    seed(settings.database_url)
    pbx_commands("call-in", "--from", DOWN_CALLER, "--hold", "8", "--wait")  # nobody watching
    async with running(settings):
        down = calls_of(settings)[f"+86{DOWN_CALLER}"]
        pbx_commands("call-in", "--from", LIVE_CALLER, "--hold", "6", "--wait")
        live = await until(lambda: calls_of(settings).get(f"+86{LIVE_CALLER}"), "the live call")
    assert down.reconciled and not live.reconciled
    for call in (down, live):
        assert (call.direction, call.disposition, call.queue) == ("inbound", "answered", "support")
        assert call.agent in ("1001", "1002") and call.talk_seconds > 3
    engine = make_engine(settings.database_url)
    with make_session_factory(engine)() as session:
        recording = session.scalars(select(Recording).where(Recording.call_id == down.id)).one()
        job = session.scalars(
            select(TranscriptionJob).where(TranscriptionJob.recording_id == recording.id)
        ).one()
    engine.dispose()
    assert recording.status == "ok" and recording.customer_path and recording.agent_path
    assert job.status == "queued"  # transcribed like any other

    async with running(settings):  # started again: nothing logged twice, nothing changed
        again = calls_of(settings)
    assert again[f"+86{DOWN_CALLER}"].id == down.id and again[f"+86{DOWN_CALLER}"].reconciled
    assert again[f"+86{LIVE_CALLER}"].id == live.id and not again[f"+86{LIVE_CALLER}"].reconciled


async def test_a_campaign_call_ended_while_down_settles_its_attempt(
    pbx_kit, pbx_commands, cdr_file, tmp_path, monkeypatch
):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    settings = settings_of(pbx_kit, cdr_file, tmp_path, campaign_unresolved_grace_seconds=2)
    seed(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.add(Customer(card_no="R1", name="客户R1",
                             phones=[CustomerPhone(number_e164=CUSTOMERS["R1"])]))  # fmt: skip

    def attempts() -> list[DialAttempt]:
        with sessions() as session:
            return list(session.scalars(select(DialAttempt)))

    async with running(settings) as site, site.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        created = await client.post(
            "/campaigns", data=campaign_form(token, "留言", "message", ["R1"]),
            files={"greeting": ("g.wav", tone_wav(3.0), "audio/wav")},
        )  # fmt: skip
        url = created.headers["location"]
        action = {"csrf_token": token, "action": "start"}
        assert (await client.post(f"{url}/action", data=action)).status_code == 303
        await until(attempts, "the attempt")
        await asyncio.sleep(0.5)  # the Originate is out: the customer's phone rings
    (placed,) = attempts()
    assert placed.outcome is None  # stopped before its outcome was known
    pbx_commands("wait-idle", "--timeout", "60")  # answered, greeted and hung up meanwhile

    async with running(settings):
        settled = await until(lambda: attempts()[0].outcome, "the attempt settled")
        await asyncio.sleep(1.0)  # a moment in which a wrongly pending target would be dialled
    assert settled == "answered"
    assert len(attempts()) == 1  # not called again
    call = calls_of(settings)[CUSTOMERS["R1"]]
    assert (call.linkedid, call.reconciled, call.disposition) == (
        placed.channel_id, True, "answered"
    )  # fmt: skip
    assert call.campaign and call.customer_id == placed.customer_id
    engine.dispose()
