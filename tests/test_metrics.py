"""``GET /metrics``: Prometheus text read from the running parts, behind the API token."""

from __future__ import annotations

import asyncio
import shutil

import httpx
from prometheus_client.parser import text_string_to_metric_families

from crm_bridge.app import create_app
from crm_bridge.settings import Settings
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

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


async def _scrape(client: httpx.AsyncClient) -> dict:
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
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
