"""Campaigns on the real Asterisk of the PBX kit (``tests/pbx_kit.py``), through the product's
own pages, API, WebSocket and database; the bridge and the dialer log in with the product's
least-privilege AMI account.

- A message campaign whose greeting is uploaded as 16 kHz stereo: the customer who answers
  hears it (it is in the call's recording of what the customer heard), the busy one and the
  one who never answers are tried again after the campaign's few seconds of retry delay,
  each attempt in the call log with its real outcome.
- A greeting Asterisk cannot play ends the attempt as failed (reason ``greeting``), not
  answered, and the customer is not called again with the same silence.
- An agent-mode campaign: the answering customer is put through to the queue, the agent's
  page gets the pop with the campaign and the customer before the agent answers, and the
  return-visit form is saved as a visit record linked to the call.

The kit's numbers (its README): 13900000001 answers, 13900000002 is busy, 13900000003 rings
and never answers.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from sqlalchemy import select
from test_pops import CHEAP_ARGON2, Site, next_frame, seed, served

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.models import (
    Call,
    Campaign,
    CampaignTarget,
    Customer,
    CustomerPhone,
    DialAttempt,
    VisitRecord,
)
from crm_bridge.settings import Settings
from telephony.dialer import GREETING_NOT_PLAYED

pytestmark = pytest.mark.realpbx

API_TOKEN = "realpbx-api-token-0123456789"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_DATA_RE = re.compile(r'data-csrf="([^"]+)"')
CUSTOMERS = {"R1": "+8613900000001", "R2": "+8613900000002", "R3": "+8613900000003"}
RETRY_MINUTES = 0.05
"""3 s between attempts: long enough to see the delay kept, short enough for a test."""
RING_SECONDS = 6.0
WAIT = 90.0
"""How long a campaign may take to finish before the test fails (not a speed check)."""


def tone_wav(seconds: float, rate: int = 16000) -> bytes:
    """440 Hz left, 660 Hz right: a 16 kHz stereo WAV, which Asterisk itself would refuse."""
    t = np.arange(int(seconds * rate)) / rate
    sides = np.stack([0.4 * np.sin(2 * np.pi * 440 * t), 0.4 * np.sin(2 * np.pi * 660 * t)], 1)
    out = io.BytesIO()
    soundfile.write(out, sides, rate, subtype="PCM_16", format="WAV")
    return out.getvalue()


@pytest.fixture
async def live(pbx_kit, pbx_commands, tmp_path, monkeypatch) -> AsyncIterator[Site]:
    """The app under uvicorn, its bridge and dialer on the kit's PBX; its greetings folder is
    the one the PBX plays as ``callbridge/greetings`` (as a center mounts it)."""
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    (tmp_path / "greetings").symlink_to(pbx_kit["greetings"], target_is_directory=True)
    ami = pbx_kit["ami"]
    settings = Settings(
        data_dir=tmp_path,
        ami_host=ami["host"],
        ami_port=ami["port"],
        ami_username=ami["username"],
        ami_secret=ami["secret"],
        api_token=API_TOKEN,
        secret_key="a-realpbx-test-secret-key-of-some-length",
        recordings_dir=pbx_kit["recordings"],
        pbx_recordings_dir=pbx_kit["recordings"],
        campaign_calls_per_second=5,
        campaign_max_concurrent=3,
        campaign_ring_seconds=RING_SECONDS,
    )
    seed(settings.database_url)  # agents wang (1001), li (1002), scheduler zhou
    engine = make_engine(settings.database_url)
    with make_session_factory(engine).begin() as session:
        for card_no, number in CUSTOMERS.items():
            session.add(Customer(card_no=card_no, name=f"客户{card_no}",
                                 phones=[CustomerPhone(number_e164=number)]))  # fmt: skip
    engine.dispose()
    app = create_app(settings)
    async with served(app) as address:
        assert await app.state.runtime.bridge.wait_connected(timeout=15)
        yield Site(None, app, address, settings)


def campaign_form(token: str, name: str, mode: str, cards: list[str]) -> dict:
    return {
        "csrf_token": token,
        "name": name,
        "kind": "return_visit",
        "mode": mode,
        "rule_uploaded": "on",
        "uploaded": "\n".join(cards),
        "start": "00:00",
        "end": "00:00",  # all day
        "weekdays": [str(day) for day in range(7)],
        "max_attempts": "2",
        "retry_busy": str(RETRY_MINUTES),
        "retry_no_answer": str(RETRY_MINUTES),
        "retry_congestion": str(RETRY_MINUTES),
        "retry_failed": str(RETRY_MINUTES),
    }


async def create_and_start(client, token: str, form: dict, greeting: bytes | None) -> str:
    files = {"greeting": ("greeting.wav", greeting, "audio/wav")} if greeting else None
    created = await client.post("/campaigns", data=form, files=files)
    assert created.status_code == 303, created.text
    url = created.headers["location"]
    started = await client.post(f"{url}/action", data={"csrf_token": token, "action": "start"})
    assert started.status_code == 303, started.text
    return url


async def finished(client, url: str) -> dict:
    async with asyncio.timeout(WAIT):
        while (progress := (await client.get(f"{url}/progress")).json())["status"] != "done":
            await asyncio.sleep(0.25)
    return progress


def attempts_by_number(site: Site) -> dict[str, list[DialAttempt]]:
    with site.sessions()() as session:
        rows = session.scalars(select(DialAttempt).order_by(DialAttempt.id)).all()
    out: dict[str, list[DialAttempt]] = {}
    for attempt in rows:
        out.setdefault(attempt.number_e164, []).append(attempt)
    return out


async def logged(site: Site, linkedids: set[str]) -> dict[str, dict]:
    """The call-log rows of these calls through the API, once all are there."""
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    client = httpx.AsyncClient(base_url=site.origin, headers=headers, timeout=10)
    async with client, asyncio.timeout(30):
        while True:
            rows = (await client.get("/api/calls", params={"limit": 100})).json()["calls"]
            found = {row["linkedid"]: row for row in rows if row["linkedid"] in linkedids}
            if len(found) == len(linkedids):
                return found
            await asyncio.sleep(0.25)


def peak_hz(path: Path) -> list[float]:
    """The two strongest frequencies of a recording (100 Hz apart at least)."""
    samples, rate = soundfile.read(str(path))
    spectrum = np.abs(np.fft.rfft(samples))
    hz = np.fft.rfftfreq(len(samples), 1 / rate)
    first = hz[np.argmax(spectrum)]
    spectrum[np.abs(hz - first) < 100] = 0
    return sorted([float(first), float(hz[np.argmax(spectrum)])])


async def test_a_message_campaign_answered_busy_and_unanswered_with_retries(live):
    async with live.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        form = campaign_form(token, "回访留言", "message", list(CUSTOMERS))
        url = await create_and_start(client, token, form, tone_wav(3.0))
        progress = await finished(client, url)
    assert progress["by_outcome"]["answered"] == 1
    assert (progress["by_outcome"]["busy"], progress["by_outcome"]["no_answer"]) == (2, 2)

    attempts = attempts_by_number(live)
    outcomes = {number: [a.outcome for a in tries] for number, tries in attempts.items()}
    assert outcomes == {
        CUSTOMERS["R1"]: ["answered"],
        CUSTOMERS["R2"]: ["busy", "busy"],
        CUSTOMERS["R3"]: ["no_answer", "no_answer"],
    }
    for number in (CUSTOMERS["R2"], CUSTOMERS["R3"]):
        first, second = attempts[number]
        assert second.created_at - first.finished_at >= timedelta(minutes=RETRY_MINUTES * 0.95)
    with live.sessions()() as session:
        query = select(CampaignTarget.customer_id, CampaignTarget.state)
        states = dict(session.execute(query).all())
    assert sorted(states.values()) == ["done", "failed", "failed"]

    calls = await logged(live, {a.channel_id for tries in attempts.values() for a in tries})
    for number, tries in attempts.items():
        for attempt in tries:
            row = calls[attempt.channel_id]
            assert (row["direction"], row["callee"]) == ("outbound", number)
            assert row["disposition"] == attempt.outcome
            assert row["customer_id"] == attempt.customer_id
    answered = attempts[CUSTOMERS["R1"]][0]
    # What the customer heard (-out of the campaign channel): the greeting, both of its tones.
    heard = Path(live.settings.recordings_dir) / f"{answered.channel_id}-out.wav"
    assert soundfile.info(str(heard)).duration >= 3.0
    low, high = peak_hz(heard)
    assert abs(low - 440) < 10 and abs(high - 660) < 10


async def test_a_greeting_asterisk_cannot_play_fails_the_attempt(live):
    async with live.signed_in("zhou") as client:
        token = CSRF_RE.search((await client.get("/campaigns")).text).group(1)
        form = campaign_form(token, "坏录音", "message", ["R1"])
        created = await client.post(
            "/campaigns", data=form, files={"greeting": ("g.wav", tone_wav(2.0), "audio/wav")}
        )
        url = created.headers["location"]
        with live.sessions()() as session:
            greeting = session.get(Campaign, int(url.rsplit("/", 1)[1])).greeting_file
        # What an upload kept as it came used to be: 16 kHz, which Asterisk refuses to play.
        (live.settings.greetings_dir / greeting).write_bytes(tone_wav(2.0))
        started = await client.post(f"{url}/action", data={"csrf_token": token, "action": "start"})
        assert started.status_code == 303
        progress = await finished(client, url)
    assert progress["by_outcome"]["failed"] == 1 and progress["by_outcome"]["answered"] == 0
    (attempt,) = attempts_by_number(live)[CUSTOMERS["R1"]]  # not called again
    assert (attempt.outcome, attempt.reason_code) == ("failed", GREETING_NOT_PLAYED)


async def test_an_agent_campaign_pops_the_customer_and_takes_the_return_visit(live, pbx_commands):
    pbx_commands("agent", "1002", "--offline")  # the queue rings wang's phone, 1001, only
    pbx_commands("agent", "1001", "--ring", "2", "--talk", "4")
    async with live.pops("wang") as ws, live.signed_in("zhou") as scheduler:
        token = CSRF_RE.search((await scheduler.get("/campaigns")).text).group(1)
        url = await create_and_start(
            scheduler, token, campaign_form(token, "空调回访", "agent", ["R1"]), None
        )
        pop = await asyncio.wait_for(next_frame(ws), 30)
        assert pop["type"] == "pop" and pop["state"] == "ringing"  # before the agent answers
        assert pop["campaign"]["name"] == "空调回访"
        states = [pop["state"]]
        while states[-1] != "ended":
            frame = await asyncio.wait_for(next_frame(ws), 60)
            if frame["linkedid"] == pop["linkedid"]:
                states.append(frame["state"])
        assert "answered" in states
        progress = await finished(scheduler, url)
    assert progress["by_outcome"]["answered"] == 1
    (attempt,) = attempts_by_number(live)[CUSTOMERS["R1"]]
    assert attempt.channel_id == pop["linkedid"] and attempt.outcome == "answered"
    assert pop["campaign"]["customer_id"] == attempt.customer_id

    call = (await logged(live, {attempt.channel_id}))[attempt.channel_id]
    assert (call["direction"], call["disposition"]) == ("outbound", "answered")
    assert call["agent"] == "1001" and call["callee"] == CUSTOMERS["R1"]
    async with live.signed_in("wang") as agent:
        csrf = CSRF_DATA_RE.search((await agent.get("/agent")).text).group(1)
        found = (await agent.get(f"/me/campaign-calls/{attempt.channel_id}")).json()
        assert found["customer_id"] == attempt.customer_id
        visit = await agent.post(
            f"/me/campaign-calls/{attempt.channel_id}/visit",
            json={"place": "电话", "opinions": "空调很好", "suggestions": "上门更快"},
            headers={"X-CSRF-Token": csrf},
        )
        assert visit.status_code == 200, visit.text
    with live.sessions()() as session:
        record = session.get(VisitRecord, visit.json()["visit_id"])
        call_id = session.scalar(select(Call.id).where(Call.linkedid == attempt.channel_id))
    assert (record.customer_id, record.call_id, record.opinions) == (
        attempt.customer_id, call_id, "空调很好"
    )  # fmt: skip
