"""``GET /metrics``: Prometheus text read from the running parts, behind the API token."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update
from test_pops import CHEAP_ARGON2, pops_of_calls, running_site

from crm_bridge.accounts import users
from crm_bridge.app import create_app
from crm_bridge.db.models import TranscriptionJob
from crm_bridge.settings import Settings
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, Trace, load_trace

TOKEN = "metrics-test-token"
SECRET = "metrics-test-secret"
TRACE = RECORDED_TRACES / "sip" / "a_inbound_answered_1001.ami"
RECORDING = (
    "1795346712.954.wav",
    RECORDED_TRACES / "recordings" / "sip_a_inbound_answered_1001.wav",
)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(client: httpx.AsyncClient, token: str = TOKEN) -> dict:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


async def _until(client: httpx.AsyncClient, key, predicate) -> dict:
    for _ in range(200):
        samples = await _scrape(client)
        if predicate(samples.get(key)):
            return samples
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} never satisfied the condition: {samples.get(key)}")


async def test_metrics_follow_a_call_and_its_transcription_job(tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    shutil.copy(RECORDING[1], recordings / RECORDING[0])
    events = load_trace(TRACE).events
    async with AmiSimulator(username="bridge", secret=SECRET) as simulator:
        settings = Settings(
            data_dir=tmp_path,
            recordings_dir=recordings,
            ami_port=simulator.port,
            ami_username="bridge",
            ami_secret=SECRET,
            api_token=TOKEN,
            secret_key="a-test-secret-key-of-some-length",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await client.get("/metrics")).status_code == 401
                wrong = {"Authorization": "Bearer wrong"}
                assert (await client.get("/metrics", headers=wrong)).status_code == 401

                server = (("server", "default"),)
                await _until(client, ("callbridge_ami_connected", server), lambda v: v == 1.0)
                await simulator.play_events(events[: len(events) // 2], speed=100, renumber=False)
                during = await _until(
                    client, ("callbridge_calls_in_flight", server), lambda v: v == 1.0
                )
                seen_during = during[("callbridge_ami_events_total", server)]
                assert seen_during > 0
                await simulator.play_events(events[len(events) // 2 :], speed=100, renumber=False)
                queued = (("status", "queued"),)
                after = await _until(
                    client, ("callbridge_transcription_jobs", queued), lambda v: v == 1.0
                )
    assert after[("callbridge_calls_in_flight", server)] == 0.0
    assert after[("callbridge_ami_events_total", server)] > seen_during
    assert after[("callbridge_transcription_lag_seconds", ())] >= 0.0
    assert after[("callbridge_transcription_jobs", (("status", "done"),))] == 0.0
    assert after[("callbridge_pop_pages", ())] == 0.0


# ----------------------------------------------------------------------- shared helpers


def _trace(name: str) -> Trace:
    return load_trace(RECORDED_TRACES / "sip" / f"{name}.ami")


def key(name: str, server: str) -> tuple:
    """The sample key of metric ``name`` for one server."""
    return (name, (("server", server),))


async def _wait_for(check, what: str) -> None:
    """Wait until ``await check()`` is true (the test's patience, not a speed check)."""
    for _ in range(400):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: {what}")


# ----------------------------------------------------------------------- per server


async def test_each_server_has_its_own_events_calls_in_flight_and_state(tmp_path):
    """Two servers that work and one whose secret is wrong: each server's events counter
    grows by exactly the events that server replayed, its calls in flight are its own."""
    full = _trace("b_inbound_abandoned").call_events
    half = _trace("a_inbound_answered_1001").call_events
    half = half[: len(half) // 2]
    async with (
        AmiSimulator(username="bridge", secret=SECRET) as main,
        AmiSimulator(username="bridge", secret=SECRET) as pbx2,
        AmiSimulator(username="bridge", secret=SECRET, login_failure_delay=0.1) as pbx3,
    ):
        others = [("pbx2", pbx2.port, SECRET), ("pbx3", pbx3.port, "not-the-secret")]
        settings = Settings(
            data_dir=tmp_path,
            ami_port=main.port,
            ami_username="bridge",
            ami_secret=SECRET,
            ami_servers=[
                {
                    "name": name,
                    "host": "127.0.0.1",
                    "port": port,
                    "username": "bridge",
                    "secret": secret,
                }
                for name, port, secret in others
            ],
            api_token=TOKEN,
            secret_key="a-test-secret-key-of-some-length",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

                async def two_connected() -> bool:
                    samples = await _scrape(client)
                    up = [
                        samples.get(key("callbridge_ami_connected", s)) for s in ("default", "pbx2")
                    ]
                    return up == [1.0, 1.0]

                await _wait_for(two_connected, "default and pbx2 connected")
                before = await _scrape(client)
                await main.play_events(full, speed=0, renumber=False)
                await pbx2.play_events(half, speed=0, renumber=False)
                events = "callbridge_ami_events_total"
                expected = {
                    "default": before[key(events, "default")] + len(full),
                    "pbx2": before[key(events, "pbx2")] + len(half),
                }

                async def counted() -> bool:
                    samples = await _scrape(client)
                    return all(samples[key(events, s)] == n for s, n in expected.items())

                await _wait_for(counted, "each server's events counted")
                await app.state.runtime.bridge.drain()
                after = await _scrape(client)

    in_flight = "callbridge_calls_in_flight"
    assert after[key(in_flight, "default")] == 0.0  # the abandoned call ended
    assert after[key(in_flight, "pbx2")] == 1.0  # half a call: still ringing
    assert after[key(in_flight, "pbx3")] == 0.0
    assert after[key("callbridge_ami_connected", "pbx3")] == 0.0
    assert after[key(events, "pbx3")] == 0.0
    assert pbx3.logins == 0


# ----------------------------------------------------------------------- pop latency


async def test_every_pop_pushed_to_a_page_is_one_pop_latency_observation(tmp_path, monkeypatch):
    monkeypatch.setattr(users, "_hasher", CHEAP_ARGON2)
    count = ("callbridge_pop_latency_seconds_count", ())
    async with running_site(tmp_path) as site:
        token = site.settings.api_token.get_secret_value()
        async with httpx.AsyncClient(base_url=site.origin) as client:
            before = await _scrape(client, token)
            assert before[count] == 0.0
            events = key("callbridge_ami_events_total", "default")
            async with site.pops("wang") as wang, site.pops("li") as li:
                names = ["a_inbound_answered_1001", "c_inbound_1001_noanswer_1002_answers"]
                for name in names:
                    await site.play(name)
                # wang (1001) is rung by both calls, li (1002) by the second only
                pops = await pops_of_calls(wang, 2) + await pops_of_calls(li, 1)
                replayed = sum(len(_trace(name).call_events) for name in names)

                async def counted() -> bool:
                    samples = await _scrape(client, token)
                    return samples[events] == before[events] + replayed

                await _wait_for(counted, "every replayed event counted")
            after = await _scrape(client, token)

    assert len(pops) >= 3 and all(isinstance(pop["ami_rx"], float) for pop in pops)
    assert after[count] == len(pops)
    assert after[("callbridge_pop_latency_seconds_sum", ())] > 0.0
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in after.items()
        if name == "callbridge_pop_latency_seconds_bucket"
    )
    assert buckets[-1] == (float("inf"), len(pops))
    assert [value for _, value in buckets] == sorted(value for _, value in buckets)


# ----------------------------------------------------------------------- transcription


async def test_queue_depth_and_lag_follow_the_transcription_jobs(tmp_path, db_url):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    trace = _trace("a_inbound_answered_1001")
    for offset in (1, 2):  # the recording names the replays give the same call
        wav = f"1795346712.{offset * 100000 + 954}.wav"
        shutil.copy(RECORDING[1], recordings / wav)
    async with AmiSimulator(username="bridge", secret=SECRET) as simulator:
        settings = Settings(
            data_dir=tmp_path,
            database_url=db_url,
            recordings_dir=recordings,
            ami_port=simulator.port,
            ami_username="bridge",
            ami_secret=SECRET,
            api_token=TOKEN,
            secret_key="a-test-secret-key-of-some-length",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            runtime = app.state.runtime
            assert await runtime.bridge.wait_connected(timeout=10)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                empty = await _scrape(client)
                for _ in (1, 2):
                    await simulator.play(trace, speed=0)
                queued = ("callbridge_transcription_jobs", (("status", "queued"),))
                two = await _until(client, queued, lambda v: v == 2.0)
                now = datetime.now(UTC)
                with runtime.sessions.begin() as session:
                    jobs = session.scalars(select(TranscriptionJob).order_by("id")).all()
                    assert [job.status for job in jobs] == ["queued", "queued"]
                    jobs[0].created_at = now - timedelta(hours=1)
                    jobs[1].created_at = now - timedelta(hours=2)
                aged = await _scrape(client)
                with runtime.sessions.begin() as session:
                    session.get(TranscriptionJob, jobs[1].id).status = "running"
                one_running = await _scrape(client)
                with runtime.sessions.begin() as session:
                    session.execute(update(TranscriptionJob).values(status="done"))
                none_left = await _scrape(client)

    lag = ("callbridge_transcription_lag_seconds", ())
    running = ("callbridge_transcription_jobs", (("status", "running"),))
    done = ("callbridge_transcription_jobs", (("status", "done"),))
    assert (empty[queued], empty[lag]) == (0.0, 0.0)
    assert two[done] == 0.0 and two[lag] >= 0.0
    assert aged[queued] == 2.0 and aged[lag] >= 7200.0  # the oldest job, two hours old
    # a job being worked on is not done yet: its recording still waits for a transcript
    assert (one_running[queued], one_running[running]) == (1.0, 1.0)
    assert one_running[lag] >= 7200.0
    assert (none_left[queued], none_left[done], none_left[lag]) == (0.0, 2.0, 0.0)
