"""No phone number reaches a log line in full: the logs of a running service are read back.

The service runs under real uvicorn with its access log on and every logger at DEBUG, connected
to the AMI simulator, which replays every recorded call; the test asks the API for customers by
number (the number is in the access log's query string) and cuts the AMI connection in the
middle of a call (reconnect and resync log their own lines). Then every line written is searched
for the callers' numbers in any form.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re

import httpx
import uvicorn

from crm_bridge.app import create_app
from crm_bridge.log_setup import masked_handler
from crm_bridge.settings import Settings
from telephony.masking import mask_numbers_in_text
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, load_trace

TOKEN = "log-test-token"
SECRET = "log-test-ami-secret"


def _numbers_in_traces() -> set[str]:
    found: set[str] = set()
    for trace in (RECORDED_TRACES / "sip").glob("*.ami"):
        found |= set(re.findall(r"CallerIDNum: (\d{8,})", trace.read_text(encoding="utf-8")))
    return found


def test_the_filter_masks_numbers_and_keeps_ids():
    assert mask_numbers_in_text("GET /api/customers?phone=13800138000") == (
        "GET /api/customers?phone=138****8000"
    )
    assert mask_numbers_in_text("to +8613800138000 now") == "to +86 138****8000 now"
    assert mask_numbers_in_text("Uniqueid 1795346712.954 at 1795346711.8454") == (
        "Uniqueid 1795346712.954 at 1795346711.8454"
    )
    assert mask_numbers_in_text("extension 1001, queue 4008") == "extension 1001, queue 4008"


def _uvicorn_loggers_to_root() -> None:
    """As ``callbridge serve`` runs uvicorn (``log_config=None``): its loggers pass every line
    to the root logger. A uvicorn started earlier in the same process with its own logging
    configuration leaves them with handlers of their own and propagation off."""
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


async def test_no_caller_number_reaches_the_logs_in_full(tmp_path):
    _uvicorn_loggers_to_root()
    stream = io.StringIO()
    handler = masked_handler(stream)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        async with AmiSimulator(username="bridge", secret=SECRET) as simulator:
            settings = Settings(
                data_dir=tmp_path,
                ami_port=simulator.port,
                ami_username="bridge",
                ami_secret=SECRET,
                api_token=TOKEN,
                secret_key="a-test-secret-key-of-some-length",
            )
            server = uvicorn.Server(
                uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_config=None)
            )
            task = asyncio.create_task(server.serve())
            try:
                while not server.started:
                    assert not task.done(), "uvicorn did not start"
                    await asyncio.sleep(0.02)
                port = server.servers[0].sockets[0].getsockname()[1]
                await _use_the_service(simulator, f"http://127.0.0.1:{port}")
            finally:
                server.should_exit = True
                await task
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)

    written = stream.getvalue()
    assert "GET /api/customers?phone=* HTTP" in written  # the access log was on
    assert "reconnect" in written.lower() or "resync" in written.lower()
    for number in _numbers_in_traces():
        national = number.lstrip("0")
        for form in {number, national, "86" + national}:
            assert form not in written, f"{mask_numbers_in_text(form)} logged in full"


async def _connected(client: httpx.AsyncClient) -> None:
    for _ in range(100):
        if (await client.get("/health")).json()["ami"][0]["state"] == "connected":
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the bridge did not connect")


async def _use_the_service(simulator: AmiSimulator, base_url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as client:
        await _connected(client)
        traces = sorted((RECORDED_TRACES / "sip").glob("[a-f]*.ami"))
        for trace in traces:
            await simulator.play(load_trace(trace), speed=50)
        for phone in ("13800138000", "+8613800138001", "008613800138002"):
            assert (await client.get("/api/customers", params={"phone": phone})).status_code == 200
        # Cut the connection with a call in flight: reconnect, resync and close it.
        transfer = load_trace(RECORDED_TRACES / "sip" / "h1_blind_transfer_1001_to_1002.ami")
        await simulator.play_events(transfer.events[: len(transfer.events) // 2], speed=50)
        await simulator.drop_clients()
        await asyncio.sleep(0.5)
        await _connected(client)
        for _ in range(100):
            if (await client.get("/api/calls")).json()["total"] >= len(traces) + 1:
                return
            await asyncio.sleep(0.1)
