"""Start-up and memory at scale: ``callbridge serve`` on 1,000,000 customers and 500,000 calls.

1. The database (SQLite): the pop benchmark's archive (``--customers`` customers with a phone
   each and their history, the agent of the 50-call trace) and ``--calls`` calls over the last
   year. Built once into ``--scratch DIR`` and reused (starting from the pop benchmark's archive
   when it is there), or into a temporary folder each run.
2. The AMI simulator runs in a process of its own, as Asterisk does. ``callbridge serve`` is
   started as a child process with its settings in the environment; ``ready_seconds`` runs
   from the start of the process until ``/health`` answers ``ok`` (database reachable, AMI
   logged in).
3. ``rss_idle_mb``: the service's resident memory (``/proc/PID/status`` VmRSS) two seconds
   after it is ready; ``rss_200_calls_mb``: the highest of it, sampled every 50 ms, while the
   simulator plays four copies of the 50-call trace at once (200 calls in flight) at their
   recorded pace; ``rss_after_mb`` once they have ended.

Usage: ``python bench/startup.py [--customers N] [--calls N] [--scratch DIR]``. The last line
is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from calls_page import AGENTS, CALL_COLUMNS, OUTCOMES, QUEUES, mobile
from pop_latency import AMI_SECRET, TRACE, RemoteSimulator, build_archive

from crm_bridge.db.engine import make_engine
from crm_bridge.db.migrate import upgrade
from telephony.trace_files import load_trace

CALLBRIDGE = Path(sys.executable).parent / "callbridge"
BATCH = 20_000
COPIES = 4


def add_calls(url: str, calls: int, customers: int) -> None:
    """``calls`` calls over the last year, a third of them from customers of the archive."""
    rng = random.Random(500)
    engine = make_engine(url)
    now = datetime.now(UTC)
    marks = ", ".join("?" * len(CALL_COLUMNS))
    statement = f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({marks})"

    def moment(value: datetime | None) -> str | None:
        return None if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")

    for start in range(0, calls, BATCH):
        rows = []
        for i in range(start, min(calls, start + BATCH)):
            offered = now - timedelta(seconds=rng.randrange(365 * 24 * 3600))
            outcome = rng.choice(OUTCOMES)
            answered = outcome == "answered"
            customer = rng.randrange(customers * 3)
            talk = rng.uniform(20, 600) if answered else 0.0
            rows.append((
                f"startup-{i}", "pbx1", "inbound", mobile(customer), "+864008001234",
                rng.choice(QUEUES), rng.choice(AGENTS) if answered else None, outcome,
                moment(offered), moment(offered + timedelta(seconds=5) if answered else None),
                moment(offered + timedelta(seconds=5 + talk)), 5.0, talk,
                customer + 1 if customer < customers else None, moment(now),
            ))  # fmt: skip
        with engine.begin() as connection:
            connection.exec_driver_sql(statement, rows)
    engine.dispose()


def place_database(folder: Path, customers: int, calls: int, scratch: Path | None) -> Path:
    """The database file for this run: built in ``folder``, or copied from ``scratch``."""
    target = folder / "callbridge.db"
    kept = (scratch or folder) / f"startup-{customers}-{calls}.db"
    if not kept.exists():
        kept.parent.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        started = time.perf_counter()
        archive = kept.parent / f"pop-archive-{customers}.db"  # bench/pop_latency.py's
        if archive.exists():
            shutil.copyfile(archive, partial)
            upgrade(f"sqlite:///{partial}")
        else:
            build_archive(f"sqlite:///{partial}", customers, load_trace(TRACE))
        add_calls(f"sqlite:///{partial}", calls, customers)
        print(f"built the database in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        partial.rename(kept)
    if kept != target:
        shutil.copyfile(kept, target)
    upgrade(f"sqlite:///{target}")  # a no-op unless migrations were added since it was built
    return target


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def serve_env(folder: Path, database: Path, ami_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    return env | {
        "CALLBRIDGE_DATA_DIR": str(folder),
        "CALLBRIDGE_DATABASE_URL": f"sqlite:///{database}",
        "CALLBRIDGE_AMI_HOST": "127.0.0.1",
        "CALLBRIDGE_AMI_PORT": str(ami_port),
        "CALLBRIDGE_AMI_USERNAME": "bench",
        "CALLBRIDGE_AMI_SECRET": AMI_SECRET,
        "CALLBRIDGE_API_TOKEN": "bench-api-token-0123456789",
        "CALLBRIDGE_SECRET_KEY": "bench-secret-key-0123456789abcdef",
    }


async def wait_ready(origin: str, process: subprocess.Popen, timeout: float = 300) -> None:
    async with httpx.AsyncClient(base_url=origin, timeout=2) as client:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"callbridge serve exited with {process.returncode}")
            try:
                if (await client.get("/health")).json()["status"] == "ok":
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
    raise TimeoutError("callbridge serve was not ready in time")


async def peak_rss_while(pid: int, work: asyncio.Future) -> float:
    peak = rss_mb(pid)
    while not work.done():
        peak = max(peak, rss_mb(pid))
        await asyncio.sleep(0.05)
    await work
    return peak


async def measure(folder: Path, database: Path, port: int) -> dict[str, float]:
    async with RemoteSimulator() as simulator:
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(CALLBRIDGE), "serve", "--port", str(port)],
            env=serve_env(folder, database, simulator.port),
            cwd=folder,
            stderr=subprocess.DEVNULL,
        )
        try:
            await wait_ready(f"http://127.0.0.1:{port}", process)
            ready = time.perf_counter() - started
            await asyncio.sleep(2)
            idle = rss_mb(process.pid)
            play = asyncio.ensure_future(simulator.play(1.0, COPIES))
            busy = await peak_rss_while(process.pid, play)
            await asyncio.sleep(2)
            after = rss_mb(process.pid)
        finally:
            process.terminate()
            process.wait(30)
    return {"ready": ready, "idle": idle, "busy": busy, "after": after}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--scratch", type=Path, default=None, help="keep the database here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="startup-") as scratch_run:
        folder = Path(scratch_run)
        database = place_database(folder, args.customers, args.calls, args.scratch)
        size_mb = database.stat().st_size / 2**20
        figures = asyncio.run(measure(folder, database, free_port()))
    print(f"machine: {platform.machine()}, CPython {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(f"database: SQLite, {args.customers:,} customers, {args.calls:,} calls, "
          f"{size_mb:,.0f} MB")  # fmt: skip
    print(f"callbridge serve ready (health ok, AMI logged in) in {figures['ready']:.2f} s")
    print(f"RSS idle {figures['idle']:.0f} MB; with {COPIES * 50} calls in flight at most "
          f"{figures['busy']:.0f} MB; after they ended {figures['after']:.0f} MB")  # fmt: skip
    print(
        json.dumps(
            {
                "ready_seconds": round(figures["ready"], 2),
                "rss_idle_mb": round(figures["idle"], 1),
                "rss_200_calls_mb": round(figures["busy"], 1),
                "rss_after_mb": round(figures["after"], 1),
                "customers": args.customers,
                "calls": args.calls,
                "database_mb": round(size_mb),
            }
        )
    )


if __name__ == "__main__":
    main()
