"""Screen-pop latency across two instances sharing pops through PostgreSQL LISTEN/NOTIFY.

What is measured (``pop``): from the moment the read that brought an ``AgentCalled`` event's
bytes returned on instance A's AMI socket to the moment the ``pop`` frame it caused arrived at a
WebSocket client signed in as the agent on instance B. In between: A's framing, call tracker
and pop relay publisher (crm_bridge/pops/relay.py: a ``pg_notify`` of each domain event, those
that queued behind a send batched in one statement), PostgreSQL, B's listener, B's hub with
its own caller lookup (started at the relayed offer), B's uvicorn and the WebSocket.

Processes, as on two machines: the AMI simulator replaying the real 50-call trace
(telephony/traces/sip/load_50_concurrent.ami) in a process of its own; instance A (uvicorn, its
bridge connected to that simulator) in a second process; instance B (uvicorn, its bridge
connected to an idle simulator of its own) and the agent's client on B's event loop in this
process. Both instances use one fresh PostgreSQL database on ``CALLBRIDGE_BENCH_PG_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``; the bench creates a database beside
it and drops it), seeded with an archive of ``--customers`` customers where every caller of
the trace is found.

The clock: the two stamps are taken in different processes, so the relay carries A's stamp as
wall-clock time and B moves it onto its own monotonic clock (the frame's ``ami_rx``); the
figures are therefore wall-clock differences on this one machine (both processes read the
same system clock). The trace is replayed at its recorded pace and 10x faster, every call
renumbered.

Usage: ``python bench/pop_relay.py [--customers N]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pop_latency import (
    AMI_SECRET,
    TRACE,
    RemoteSimulator,
    add_agent,
    bench_settings,
    pops_at_every_pace,
    seed_archive,
    served,
    summary,
    trace_callers_and_agents,
)
from scratch_database import scratch_database

from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine
from crm_bridge.db.migrate import upgrade
from telephony.simulator import AmiSimulator
from telephony.trace_files import load_trace

PACES = ((1.0, 2), (10.0, 6))
"""(speed, rounds): how fast the trace is replayed and how many times."""
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
READY_TIMEOUT = 30.0


# ------------------------------------------------------------------------------- instance A


def instance_a_process(pipe: Connection, database_url: str, ami_port: int, folder: str) -> None:
    """Instance A: the app under uvicorn, its bridge on the replaying simulator. Sends
    ``ready`` once its bridge and relay are connected; on any message, sends its publisher's
    counters and stops."""

    async def serve() -> None:
        app = create_app(bench_settings(Path(folder), ami_port, database_url))
        async with served(app):
            runtime = app.state.runtime
            assert await runtime.bridge.wait_connected(READY_TIMEOUT), "A: AMI not connected"
            assert await runtime.pop_relay.wait_connected(READY_TIMEOUT), "A: relay not up"
            pipe.send("ready")
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            publisher = runtime.pop_relay.publisher
            pipe.send({"published": publisher.published, "dropped": publisher.dropped})

    asyncio.run(serve())


class InstanceA:
    """Instance A's process, driven from the bench."""

    def __init__(self, database_url: str, ami_port: int, folder: Path) -> None:
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=instance_a_process,
            args=(child, database_url, ami_port, str(folder)),
            daemon=True,
        )
        self.counters: dict[str, int] = {}

    async def __aenter__(self) -> InstanceA:
        self._process.start()
        ready = await asyncio.to_thread(self._pipe.recv)
        assert ready == "ready", ready
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pipe.send("stop")
        self.counters = await asyncio.to_thread(self._pipe.recv)
        await asyncio.to_thread(self._process.join, 20)


# ------------------------------------------------------------------------------- instance B


async def measure_on_b(
    database_url: str, folder: Path, simulator: RemoteSimulator, calls: int
) -> dict[float, list[float]]:
    """Instance B here, the agent's client on its loop; the pop latencies at each pace."""
    async with AmiSimulator(username="bench", secret=AMI_SECRET) as idle:
        app = create_app(bench_settings(folder, idle.port, database_url))
        async with served(app) as address:
            runtime = app.state.runtime
            assert await runtime.bridge.wait_connected(READY_TIMEOUT), "B: AMI not connected"
            assert await runtime.pop_relay.wait_connected(READY_TIMEOUT), "B: relay not up"
            return await pops_at_every_pace(address, simulator, calls, PACES)


# ------------------------------------------------------------------------------- main


async def run(customers: int) -> dict[str, Any]:
    trace = load_trace(TRACE)
    callers, interfaces = trace_callers_and_agents(trace)
    admin_url = os.environ.get("CALLBRIDGE_BENCH_PG_URL") or DEFAULT_PG_URL
    with (
        scratch_database(admin_url) as database_url,
        tempfile.TemporaryDirectory(prefix="relay-") as tmp,
    ):
        folder = Path(tmp)
        upgrade(database_url)
        engine = make_engine(database_url)
        started = time.perf_counter()
        seed_archive(engine, customers, callers)
        seed_seconds = time.perf_counter() - started
        add_agent(engine, interfaces)
        engine.dispose()
        async with (
            RemoteSimulator() as simulator,
            InstanceA(database_url, simulator.port, folder / "a") as instance_a,
        ):
            pops = await measure_on_b(database_url, folder / "b", simulator, len(callers))
    return {
        "seed_seconds": seed_seconds,
        "pops": {speed: summary(values) for speed, values in pops.items()},
        "pop_count": sum(len(v) for v in pops.values()),
        "calls": len(callers),
        "agents": len(interfaces),
        "trace_seconds": trace.duration,
        "publisher": instance_a.counters,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    result = asyncio.run(run(args.customers))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, "
          f"CPython {platform.python_version()}")  # fmt: skip
    print(f"archive: {args.customers:,} customers in PostgreSQL, "
          f"seeded in {result['seed_seconds']:.1f} s")  # fmt: skip
    print(f"trace: {TRACE.name}, {result['calls']} calls over {result['agents']} agents, "
          f"{result['trace_seconds']:.1f} s at 1x")  # fmt: skip
    print(f"instance A's publisher: {result['publisher']}")
    for speed, figures in result["pops"].items():
        print(f"pop at B of a call seen by A, {speed:g}x: p50 {figures['p50']} ms, "
              f"p99 {figures['p99']} ms, max {figures['max']} ms")  # fmt: skip
    figures: dict[str, Any] = {
        f"relay_pop_{stat}_ms_{speed:g}x": result["pops"][speed][stat]
        for speed, _ in PACES
        for stat in ("p50", "p99", "max")
    }
    figures |= {
        "pops": result["pop_count"],
        "customers": args.customers,
        "events_dropped": result["publisher"].get("dropped"),
        "clock": "wall-clock across processes",
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
