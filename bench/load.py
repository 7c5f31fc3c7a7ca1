"""Load: 200 simultaneous calls through the bridge, then an hour's worth of calls.

Set-up as in bench/pop_latency.py (whose pieces this script uses): a migrated SQLite file
(or ``--database-url``), an archive of ``--customers`` customers that includes the callers of
the real 50-call trace (telephony/traces/sip/load_50_concurrent.ami), one agent signed in on
``/ws/pops`` for every extension the trace rings, the app under uvicorn and the AMI simulator in
a process of its own.

1. Burst: four renumbered copies of the 50-call trace at once, so 200 calls are in flight
   together, at the trace's own pace and 10x faster. Figures: AMI events per second the bridge
   took in over the burst, and pop latency (AMI bytes in -> pop frame at the agent's socket).
2. Soak: ``--soak-calls`` more calls (default 16,000: the trace's rate of 50 calls in 11 s
   kept up for an hour), replayed 100x faster in rounds of 200. The process's resident memory
   (RSS) is read after the first rounds and at the end; the growth is what an hour of calls
   leaves behind.

Every call replayed must be in the call log exactly once: ``lost`` counts the calls missing
(and duplicates, which the unique Linkedid makes impossible, are counted too). Events per
second is what the bridge took in over a burst, from the first event sent to the last call's
end reaching the agent's page: everything included (parsing, tracking, pops, call log).

Usage: ``python bench/load.py [--customers N] [--soak-calls N] [--database-url URL]``.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pop_latency import (
    AGENT,
    PopClock,
    RemoteSimulator,
    add_agent,
    bench_settings,
    seed_archive,
    served,
    session_cookie,
    summary,
    trace_callers_and_agents,
)
from pop_latency import TRACE as LOAD_TRACE
from scratch_database import scratch_database
from sqlalchemy import func, select
from websockets.asyncio.client import connect

from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call
from crm_bridge.settings import Settings
from telephony.trace_files import load_trace

COPIES = 4
"""Copies of the 50-call trace played at once: 200 calls in flight together."""
BURST_PACES = (1.0, 10.0)
SOAK_SPEED = 100.0
ROUND_TIMEOUT = 300.0


def rss_mb() -> float:
    """This process's resident memory now, from /proc (ru_maxrss would give only the peak)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


class Site:
    """The running app, the simulator and the agent's socket reader."""

    def __init__(self, app: Any, simulator: RemoteSimulator, clock: PopClock, calls: int):
        self.app = app
        self.simulator = simulator
        self.clock = clock
        self.calls_per_copy = calls

    @property
    def events_seen(self) -> int:
        return sum(link.events_seen for link in self.app.state.runtime.bridge.links)

    async def play(self, speed: float, copies: int) -> tuple[list[float], float, int]:
        """Play ``copies`` copies at once; (pop latencies, seconds, AMI events taken in)."""
        first, ended = len(self.clock.latencies), self.clock.ended + copies * self.calls_per_copy
        events_before, started = self.events_seen, time.monotonic()
        await self.simulator.play(speed, copies)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROUND_TIMEOUT
        while self.clock.ended < ended:
            self.clock.progress.clear()
            await asyncio.wait_for(self.clock.progress.wait(), max(0.0, deadline - loop.time()))
        seconds = time.monotonic() - started
        return self.clock.latencies[first:], seconds, self.events_seen - events_before


async def burst(site: Site, speed: float) -> dict[str, float]:
    latencies, seconds, events = await site.play(speed, COPIES)
    figures = summary(latencies)
    print(
        f"burst of {COPIES * site.calls_per_copy} calls at {speed:g}x: {events} AMI events in "
        f"{seconds:.1f} s = {events / seconds:,.0f}/s; pop p50 {figures['p50']} ms, "
        f"p99 {figures['p99']} ms, max {figures['max']} ms",
        file=sys.stderr,
    )
    return {"events_per_s": events / seconds, "pop_p99_ms": figures["p99"], **figures}


async def soak(site: Site, calls: int) -> dict[str, float]:
    per_round = COPIES * site.calls_per_copy
    rounds = max(2, -(-calls // per_round))
    warm_up = max(1, rounds // 10)
    baseline = 0.0
    started = time.monotonic()
    for index in range(rounds):
        await site.play(SOAK_SPEED, COPIES)
        if index + 1 == warm_up:
            baseline = rss_mb()
        if (index + 1) % 10 == 0:
            print(
                f"  soak: {(index + 1) * per_round} calls, RSS {rss_mb():.0f} MB", file=sys.stderr
            )
    await site.app.state.runtime.bridge.drain()
    final = rss_mb()
    return {
        "calls": rounds * per_round,
        "seconds": time.monotonic() - started,
        "rss_after_warm_up_mb": baseline,
        "rss_end_mb": final,
        "rss_growth_mb": final - baseline,
    }


def calls_logged(settings: Settings) -> tuple[int, int]:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            total = session.scalar(select(func.count()).select_from(Call)) or 0
            distinct = session.scalar(select(func.count(func.distinct(Call.linkedid)))) or 0
    finally:
        engine.dispose()
    return total, distinct


async def run(customers: int, soak_calls: int, database_url: str | None) -> dict[str, Any]:
    trace = load_trace(LOAD_TRACE)
    callers, interfaces = trace_callers_and_agents(trace)
    with (
        tempfile.TemporaryDirectory(prefix="load-") as folder,
        scratch_database(database_url or f"sqlite:///{Path(folder) / 'callbridge.db'}") as url,
    ):
        async with RemoteSimulator() as simulator:
            settings = bench_settings(Path(folder), simulator.port, url)
            upgrade(settings.database_url)
            engine = make_engine(settings.database_url)
            seed_archive(engine, customers, callers)
            add_agent(engine, interfaces)
            engine.dispose()
            seeded, _ = calls_logged(settings)  # the archive's past calls
            app = create_app(settings)
            async with served(app) as address:
                assert await app.state.runtime.bridge.wait_connected(timeout=10)
                origin = f"http://{address}"
                headers = {"Cookie": await session_cookie(origin)}
                async with connect(f"ws://{address}/ws/pops", additional_headers=headers,
                                   origin=origin, max_size=None) as ws:  # fmt: skip
                    assert json.loads(await ws.recv())["user"] == AGENT
                    clock = PopClock(ws)
                    reader = asyncio.create_task(clock.run())
                    site = Site(app, simulator, clock, len(callers))
                    try:
                        bursts = {speed: await burst(site, speed) for speed in BURST_PACES}
                        soaked = await soak(site, soak_calls)
                    finally:
                        reader.cancel()
            replayed = (len(BURST_PACES) * COPIES * len(callers)) + soaked["calls"]
            total, distinct = calls_logged(settings)
    return {
        "replayed": replayed,
        "logged": total - seeded,
        "duplicates": total - distinct,
        "bursts": bursts,
        "soak": soaked,
        "customers": customers,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--soak-calls", type=int, default=16_000)
    parser.add_argument("--database-url", default=None, help="default: a SQLite file")
    args = parser.parse_args()
    result = asyncio.run(run(args.customers, args.soak_calls, args.database_url))

    soaked = result["soak"]
    print(f"machine: {platform.machine()}, CPython {platform.python_version()}")
    for speed, figures in result["bursts"].items():
        print(
            f"{COPIES * 50} simultaneous calls at {speed:g}x: {figures['events_per_s']:,.0f} "
            f"AMI events/s, pop p50 {figures['p50']} ms, p99 {figures['p99']} ms"
        )
    print(
        f"soak: {soaked['calls']:,} calls in {soaked['seconds']:.0f} s; RSS "
        f"{soaked['rss_after_warm_up_mb']:.0f} MB after warm-up, {soaked['rss_end_mb']:.0f} MB "
        f"at the end (growth {soaked['rss_growth_mb']:.1f} MB)"
    )
    lost = result["replayed"] - (result["logged"] - result["duplicates"])
    print(
        f"calls replayed {result['replayed']:,}, logged {result['logged']:,}, "
        f"lost {lost}, duplicates {result['duplicates']}"
    )
    print(
        json.dumps(
            {
                "calls": result["replayed"],
                "events_per_s": round(result["bursts"][10.0]["events_per_s"]),
                "pop_p99_ms": result["bursts"][1.0]["p99"],
                "pop_p99_ms_10x": result["bursts"][10.0]["p99"],
                "lost": lost + result["duplicates"],
                "rss_growth_mb": round(soaked["rss_growth_mb"], 1),
            }
        )
    )


if __name__ == "__main__":
    main()
