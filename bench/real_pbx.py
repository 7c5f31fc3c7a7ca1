"""Figures from real calls through the PBX kit's Asterisk (``../shared/pbx``, or ``PBX_KIT``).

The script starts a kit of its own (work dir in a temporary folder, ``--port-offset``), loading
this repo's ``dialplans/``, and runs the product against it with the product's least-privilege
AMI account, as ``tests/test_realpbx_*.py`` do. Measured:

* ``pop_lead``: how long before the agent's phone answered the pop frame reached the agent's
  page (the call log's ``answered_at``, Asterisk's time, minus the frame's arrival at the
  WebSocket client, both wall clock on this machine), over ``--calls`` inbound calls (the kit's
  phones ring ``--ring`` seconds).
* ``ami_to_pop``: from the moment the read that brought the AMI event's bytes returned on the
  bridge's socket (the frame's ``ami_rx``) to the pop frame's arrival at the page, one clock
  (``time.monotonic()``; the page's client runs on the server's loop).
* ``pbx_restart``: ``core restart now`` (the kit's ``restart pbx --mode core``, which returns once
  Asterisk is FullyBooted and the phones are reachable): from the command to the bridge being
  in step again (logged in, FullyBooted seen, resynced), and from the bridge's loss of the
  connection to that.
* ``service_restart``: ``callbridge serve`` killed (SIGKILL) and started again: from the start of
  the new process, and from its first answer over HTTP (imports, migrations and the journal
  replay are behind it), to its ``/health`` saying the AMI connection is up and resynced.

Usage: ``python bench/real_pbx.py [--calls N] [--port-offset N]``. The last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import httpx
import uvicorn
from argon2 import PasswordHasher
from websockets.asyncio.client import connect

from crm_bridge.accounts import users
from crm_bridge.accounts.auth import SESSION_COOKIE
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Customer, CustomerPhone, User
from crm_bridge.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KIT = Path(os.environ.get("PBX_KIT") or ROOT.parent / "shared" / "pbx")
CALLBRIDGE = Path(sys.executable).with_name("callbridge")
PASSWORD = "bench-password-1"
TOKEN = "bench-api-token-0123456789"
KEY = "bench-session-key-0123456789"
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def pbx(*args: object) -> str:
    return subprocess.run([str(KIT / "pbx"), *map(str, args)], check=True, capture_output=True,
                          text=True, timeout=120).stdout  # fmt: skip


def start_kit(work: Path, offset: int) -> dict:
    os.environ["PBX_WORKDIR"] = str(work)
    out = pbx("start", "--dialplans", ROOT / "dialplans", "--recordings", work / "recordings",
              "--port-offset", offset, "--json")  # fmt: skip
    return json.loads(out[out.index("\n{") + 1 :] if not out.startswith("{") else out)


def settings_for(data: Path, info: dict) -> Settings:
    ami = info["ami"]
    return Settings(data_dir=data, ami_host=ami["host"], ami_port=ami["port"],
                    ami_username=ami["username"], ami_secret=ami["secret"],
                    recordings_dir=Path(info["recordings"]),
                    pbx_recordings_dir=info["recordings"], api_token=TOKEN,
                    secret_key=KEY)  # fmt: skip


def seed(url: str) -> None:
    upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine).begin() as session:
        session.add(User(username="desk", password_hash=CHEAP.hash(PASSWORD), role="agent",
                         extensions=["1001", "1002"]))  # fmt: skip
        session.add(Customer(card_no="B0001", name="张三", phones=[
            CustomerPhone(number_e164="+8613800138000", kind="mobile")]))  # fmt: skip
    engine.dispose()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@asynccontextmanager
async def served(app, port: int):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def cookie(origin: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://{origin}") as client:
        page = await client.get("/login")
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        await client.post("/login", data={"username": "desk", "password": PASSWORD,
                                          "csrf_token": token, "next": ""})  # fmt: skip
        return f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"


async def frames(ws, until_state: str) -> list[tuple[float, float, dict]]:
    """(wall, monotonic, frame) of each call frame up to one in ``until_state``."""
    seen = []
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        seen.append((time.time(), time.monotonic(), frame))
        if frame.get("state") == until_state:
            return seen


async def answered_at(origin: str, linkedid: str) -> float:
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=f"http://{origin}", headers=bearer) as c:
        for _ in range(300):
            calls = (await c.get("/api/calls", params={"limit": 200})).json()["calls"]
            for call in calls:
                if call["linkedid"] == linkedid and call["answered_at"]:
                    return datetime.fromisoformat(call["answered_at"]).timestamp()
            await asyncio.sleep(0.1)
    raise RuntimeError(f"call {linkedid} not logged")


async def inbound_calls(origin: str, count: int, ring: float) -> tuple[list[float], list[float]]:
    leads, latencies = [], []
    headers = {"Cookie": await cookie(origin)}
    async with connect(f"ws://{origin}/ws/pops", additional_headers=headers,
                       origin=f"http://{origin}") as ws:  # fmt: skip
        await ws.recv()  # hello
        for agent in ("1001", "1002"):
            await asyncio.to_thread(pbx, "agent", agent, "--ring", ring, "--talk", "1")
        for _ in range(count):
            await asyncio.to_thread(pbx, "call-in", "--from", "13800138000", "--hold", "3")
            seen = await frames(ws, "ended")
            wall, mono, pop = next((w, m, f) for w, m, f in seen if f["type"] == "pop")
            latencies.append(mono - pop["ami_rx"])
            leads.append(await answered_at(origin, pop["linkedid"]) - wall)
            await asyncio.to_thread(pbx, "wait-idle")
            await asyncio.sleep(11)  # the queue's wrap-up: both agents free again
    return leads, latencies


async def pbx_restart(bridge) -> tuple[float, float]:
    started = time.monotonic()
    restart = asyncio.create_task(asyncio.to_thread(pbx, "restart", "pbx", "--mode", "core"))
    while bridge.in_step:
        await asyncio.sleep(0.005)
    lost = time.monotonic()
    while not bridge.in_step:
        await asyncio.sleep(0.005)
    back = time.monotonic()
    await restart
    return back - started, back - lost


async def service_restart(settings: Settings) -> tuple[float, float]:
    """From the new process's start, and from its first answer over HTTP (the app is up, the
    bridge connecting), to its ``/health`` saying it is in step."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    env |= {"CALLBRIDGE_DATA_DIR": str(settings.data_dir),
            "CALLBRIDGE_DATABASE_URL": settings.database_url,
            "CALLBRIDGE_AMI_HOST": settings.ami_host,
            "CALLBRIDGE_AMI_PORT": str(settings.ami_port),
            "CALLBRIDGE_AMI_USERNAME": settings.ami_username,
            "CALLBRIDGE_AMI_SECRET": settings.ami_secret.get_secret_value(),
            "CALLBRIDGE_API_TOKEN": TOKEN, "CALLBRIDGE_SECRET_KEY": KEY}  # fmt: skip
    port = free_port()
    argv = [str(CALLBRIDGE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await healthy(port, first)
    first.send_signal(signal.SIGKILL)
    first.wait()
    started = time.monotonic()
    second = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        answering = await healthy(port, second)
        return time.monotonic() - started, time.monotonic() - answering
    finally:
        second.terminate()
        second.wait(20)


async def healthy(port: int, process: subprocess.Popen) -> float:
    """Wait for ``/health`` to say ok; return when the service first answered at all."""
    answering = None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as client:
        while process.poll() is None:
            try:
                health = (await client.get("/health")).json()
                answering = answering or time.monotonic()
                if health["status"] == "ok":
                    return answering
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError("callbridge serve exited")


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    ordered = sorted(v * scale for v in values)
    return {"min": round(ordered[0], 1), "median": round(statistics.median(ordered), 1),
            "max": round(ordered[-1], 1)}  # fmt: skip


async def run(args: argparse.Namespace, work: Path) -> dict:
    info = start_kit(work / "kit", args.port_offset)
    settings = settings_for(work / "data", info)
    seed(settings.database_url)
    users._hasher = CHEAP
    app = create_app(settings)
    async with served(app, free_port()) as origin:
        bridge = app.state.runtime.bridge
        await bridge.wait_connected(30)
        leads, latencies = await inbound_calls(origin, args.calls, args.ring)
        restarts = [await pbx_restart(bridge) for _ in range(args.restarts)]
    service = [await service_restart(settings) for _ in range(args.restarts)]
    return {
        "pop_lead_ms": summary(leads),
        "ami_to_pop_ms": summary(latencies),
        "pbx_restart_to_in_step_ms": summary([r[0] for r in restarts]),
        "pbx_lost_to_in_step_ms": summary([r[1] for r in restarts]),
        "service_start_to_in_step_ms": summary([s[0] for s in service]),
        "service_answering_to_in_step_ms": summary([s[1] for s in service]),
        "calls": args.calls,
        "ring_seconds": args.ring,
        "asterisk": info["asterisk"].split(" built")[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--ring", type=float, default=2.0)
    parser.add_argument("--restarts", type=int, default=3)
    offset = int(os.environ.get("PBX_PORT_OFFSET", 0))
    parser.add_argument("--port-offset", type=int, default=offset)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="real-pbx-bench-") as folder:
        work = Path(folder)
        try:
            result = asyncio.run(run(args, work))
        finally:
            subprocess.run([str(KIT / "pbx"), "stop"], capture_output=True)
    for name, figures in result.items():
        print(f"{name}: {figures}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
