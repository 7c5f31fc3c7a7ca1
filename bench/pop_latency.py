"""Screen-pop latency with a million customers in the archive.

What is measured, both ends in the bridge's process and on one clock (``time.monotonic()``):

* ``pop``: from the moment the read that brought an ``AgentCalled``/``DialBegin`` event's bytes
  returned on the bridge's AMI socket (the ``ami_rx`` of the frame, see crm_bridge/pops/hub.py) to
  the moment the ``pop`` frame it caused arrived at a WebSocket client signed in as the agent.
  The path in between is the whole product: framing and parsing, the call tracker, the hub,
  the caller lookup in the database (made when the call is offered), uvicorn and the
  WebSocket.
* ``lookup``: the lookup alone, number -> pop (crm_bridge/pops/hub.py ``database_lookup``), for
  random numbers of the archive, one at a time, after a short warm-up.

Set-up: a SQLite file in a temporary folder, migrated like production, seeded with Core
``executemany`` inserts in large batches (customers, one phone each, some purchases, visits,
complaints and past calls); the callers of the real 50-call trace
(telephony/traces/sip/load_50_concurrent.ami) are among the customers. One agent user holds
every extension the trace rings (its queue members ``Local/20NN@agents-load/n``). The app runs
under uvicorn on a free loopback port with the AMI simulator (telephony/simulator/) as its
Asterisk, in a process of its own as Asterisk is; the agent signs in through the sign-in form
and opens ``/ws/pops`` with the session cookie. The trace is replayed at its recorded pace,
then 10x, 50x and 100x faster (several rounds each, every call renumbered): once on a quiet
machine, then again while a CPU-bound process the bench starts keeps the other core busy (a
production box runs transcription workers beside the bridge), and stops afterwards; and last
at 10x and 50x while campaign selections (today's birthdays, the half month's top spenders and
the important customers of the archive) are asked for again and again from a worker thread of
the bridge's process, as the campaign pages ask: the service runs them in its audience process
(crm_bridge/campaigns/audience_process.py).
The call log's writer thread stores every call that ends in all of these, as it does in
production.

The WebSocket client runs on the server's event loop (that is what puts both stamps on one
clock), so its own reading is inside the figures.

With ``--scratch DIR`` the seeded archive is built once into ``DIR`` (outside the repository)
and copied for each later run; without it every run seeds a temporary one.

Usage: ``python bench/pop_latency.py [--customers N] [--lookups N] [--scratch DIR]``. The last
line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import platform
import random
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import Engine, insert, text
from websockets.asyncio.client import ClientConnection, connect

from crm_bridge.accounts.auth import SESSION_COOKIE
from crm_bridge.accounts.users import create_user
from crm_bridge.app import create_app
from crm_bridge.campaigns.audience_process import AudienceProcess
from crm_bridge.campaigns.rules import BirthdayRule, TopSpendersRule, rules_json
from crm_bridge.customers.numbers import normalize_phone
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Call, Complaint, Customer, CustomerPhone, Purchase, VisitRecord
from crm_bridge.pops.hub import agent_key
from crm_bridge.pops.lookups import database_lookup
from crm_bridge.settings import Settings
from crm_bridge.speech.jobs import WORKER_NICENESS
from telephony.simulator import AmiSimulator
from telephony.trace_files import RECORDED_TRACES, Trace, load_trace

TRACE = RECORDED_TRACES / "sip" / "load_50_concurrent.ami"
PACES = ((1.0, 2), (10.0, 6), (50.0, 8), (100.0, 10))
"""(speed, rounds): how fast the trace is replayed and how many times."""
SELECTION_PACES = ((10.0, 6), (50.0, 8))
"""The paces replayed while the service is asked for campaign selections."""
PHASES = {
    "pops": ("quiet", ""),
    "pops_busy": ("other core busy", "_busy"),
    "pops_selection": ("campaign selections asked for meanwhile", "_selection"),
}
"""Each phase's result key: its label and the suffix of its JSON keys."""
BATCH = 50_000
AGENT, PASSWORD = "bench-agent", "bench-password-1"
AMI_SECRET = "bench-ami-secret"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
ROUND_TIMEOUT = 120.0
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"


# ------------------------------------------------------------------------------- the archive


def archive_number(index: int) -> str:
    """The mobile number of archive customer ``index`` (1-based), in E.164; none is a caller of
    the trace (those are +86138000000xx)."""
    return f"+86150{index:08d}"


def trace_callers_and_agents(trace: Trace) -> tuple[list[str], list[str]]:
    """The numbers the trace's calls come from and the queue-member interfaces it rings."""
    callers: list[str] = []
    interfaces: list[str] = []
    for event in trace.events:
        if event.get("Event") == "AgentCalled":
            if event["CallerIDNum"] not in callers:
                callers.append(event["CallerIDNum"])
            if event["Interface"] not in interfaces:
                interfaces.append(event["Interface"])
    return callers, interfaces


def customer_rows(start: int, stop: int) -> Iterator[dict[str, Any]]:
    rng = random.Random(start)
    now = datetime.now(UTC)
    for i in range(start, stop):
        yield {
            "id": i,
            "card_no": f"B{i:08d}",
            "name": rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
            "gender": rng.choice("MF"),
            "birthday": date(1950, 1, 1) + timedelta(days=rng.randrange(20_000)),
            "lunar_birthday": False,
            "employer": f"单位{i % 5000}",
            "vip_level": rng.choice((None, "银卡", "金卡", "钻石卡")),
            "tags": [],
            "consent_to_calls": True,
            "created_at": now,
            "updated_at": now,
        }


def history_rows(start: int, stop: int, callers: dict[int, str]) -> dict[Any, list[dict[str, Any]]]:
    """Phones for every customer; purchases for one in 10, a visit for one in 20, a complaint
    and a past call for one in 100; every trace caller gets all of them."""
    rng = random.Random(-start)
    now = datetime.now(UTC)
    rows: dict[Any, list[dict[str, Any]]] = {
        CustomerPhone: [],
        Purchase: [],
        VisitRecord: [],
        Complaint: [],
        Call: [],
    }
    for i in range(start, stop):
        number = callers.get(i, archive_number(i))
        rows[CustomerPhone].append({"customer_id": i, "number_e164": number, "kind": "mobile"})
        caller = i in callers
        if caller or i % 10 == 0:
            for n in range(3):
                rows[Purchase].append({
                    "customer_id": i,
                    "purchased_on": (now - timedelta(days=rng.randrange(1, 700))).date(),
                    "department": rng.choice(("家电", "服装", "食品", "珠宝")),
                    "amount": Decimal(rng.randrange(100, 500_000)) / 100,
                    "items": f"商品 {n}",
                })  # fmt: skip
        if caller or i % 20 == 0:
            rows[VisitRecord].append({
                "customer_id": i,
                "visited_at": now - timedelta(days=rng.randrange(1, 300)),
                "place": "门店",
                "channel": "phone",
                "opinions": "服务满意",
            })  # fmt: skip
        if caller or i % 100 == 0:
            rows[Complaint].append({
                "customer_id": i,
                "received_at": now - timedelta(days=rng.randrange(1, 30)),
                "content": "送货延误",
                "status": "open",
            })  # fmt: skip
            rows[Call].append({
                "linkedid": f"seed.{i}",
                "server": "default",
                "direction": "inbound",
                "caller": number,
                "agent": "2001",
                "disposition": "answered",
                "offered_at": now - timedelta(days=rng.randrange(1, 60)),
                "customer_id": i,
                "created_at": now,
            })  # fmt: skip
    return rows


def seed_archive(engine: Engine, customers: int, callers: list[str]) -> None:
    """``customers`` customers with ids 1..N; the trace's callers are customers 1..len(callers)
    (so each is found), everyone else has a number of :func:`archive_number`."""
    by_id = {i + 1: str(normalize_phone(number).e164) for i, number in enumerate(callers)}
    with engine.begin() as conn:
        for start in range(1, customers + 1, BATCH):
            stop = min(start + BATCH, customers + 1)
            conn.execute(insert(Customer), list(customer_rows(start, stop)))
            for model, rows in history_rows(start, stop, by_id).items():
                if rows:
                    conn.execute(insert(model), rows)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))


def add_agent(engine: Engine, interfaces: list[str]) -> None:
    """One agent holding every extension the trace rings (``Local/2001@agents-load/n`` is
    extension ``2001``), so every call of the trace pops on their page."""
    with make_session_factory(engine).begin() as session:
        create_user(session, AGENT, PASSWORD, "agent", [agent_key(i) for i in interfaces])


# ------------------------------------------------------------------------------- figures


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50": round(percentile(ms, 50), 2),
        "p99": round(percentile(ms, 99), 2),
        "max": round(max(ms), 2),
        "mean": round(statistics.fmean(ms), 2),
    }


def measure_lookups(
    engine: Engine, settings: Settings, first: int, last: int, count: int
) -> list[float]:
    """Seconds per lookup of ``count`` random numbers of customers ``first``..``last``, as
    Asterisk shows them (national form, no +86)."""
    lookup = database_lookup(
        make_session_factory(engine),
        zone=settings.zone,
        region=settings.number_region,
        outside_line_prefix=settings.outside_line_prefix,
    )
    rng = random.Random(7)
    numbers = [archive_number(rng.randint(first, last))[3:] for _ in range(count + 100)]
    for number in numbers[:100]:  # warm-up: open connections, fill SQLite's page cache
        lookup([number])
    timings = []
    for number in numbers[100:]:
        started = time.perf_counter()
        (found,) = lookup([number])
        timings.append(time.perf_counter() - started)
        assert found.kind == "known", found.kind
    return timings


def spin(stop: Any, niceness: int) -> None:
    """Burn one core until ``stop`` is set, as a transcription worker does (at its priority)."""
    os.nice(niceness)
    while not stop.is_set():
        sum(range(10_000))


class SelectionLoop:
    """Campaign selections, one after another until stopped, asked for as the campaign pages
    ask for them: from a worker thread of the service, through its
    :class:`~crm_bridge.campaigns.audience_process.AudienceProcess`."""

    def __init__(self, audience: AudienceProcess) -> None:
        self.audience = audience
        self.seconds: list[float] = []
        self.targets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="campaign-selection")

    def _run(self) -> None:
        rules = rules_json([BirthdayRule(), TopSpendersRule(top_n=10, include_important=True)])
        today = datetime.now(self.audience.zone).date()
        while not self._stop.is_set():
            started = time.perf_counter()
            self.targets = len(self.audience.select(rules, today, "birthday").ids)
            self.seconds.append(time.perf_counter() - started)

    def __enter__(self) -> SelectionLoop:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def busy_core(niceness: int) -> Iterator[None]:
    """A CPU-bound process of our own running for the duration of the block."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    process = context.Process(target=spin, args=(stop, niceness), daemon=True)
    process.start()
    try:
        yield
    finally:
        stop.set()
        process.join(10)


# ------------------------------------------------------------------------------- Asterisk


def simulator_process(pipe: Connection) -> None:
    """The AMI simulator in a process of its own, as Asterisk is: it replays ``copies`` copies
    of the trace at once (each renumbered: new calls) at the ``speed`` it is sent and answers
    ``done``; ``None`` stops it."""

    async def serve() -> None:
        trace = load_trace(TRACE)
        async with AmiSimulator(username="bench", secret=AMI_SECRET) as simulator:
            pipe.send(simulator.port)
            loop = asyncio.get_running_loop()
            while (order := await loop.run_in_executor(None, pipe.recv)) is not None:
                speed, copies = order
                plays = (simulator.play(trace, speed=speed, renumber=True) for _ in range(copies))
                await asyncio.gather(*plays)
                pipe.send("done")

    asyncio.run(serve())


class RemoteSimulator:
    """The simulator process, driven from the bench."""

    def __init__(self) -> None:
        self._pipe, child = multiprocessing.Pipe()
        self._process = multiprocessing.get_context("spawn").Process(
            target=simulator_process, args=(child,), daemon=True
        )

    async def __aenter__(self) -> RemoteSimulator:
        self._process.start()
        self.port: int = await asyncio.to_thread(self._pipe.recv)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pipe.send(None)
        await asyncio.to_thread(self._process.join, 10)

    async def play(self, speed: float, copies: int = 1) -> None:
        self._pipe.send((speed, copies))
        assert await asyncio.to_thread(self._pipe.recv) == "done"


# ------------------------------------------------------------------------------- the site


def bench_settings(folder: Path, ami_port: int, database_url: str | None = None) -> Settings:
    """The service's settings for a bench run: data in ``folder`` (SQLite unless
    ``database_url``), the simulator on ``ami_port`` as its Asterisk."""
    return Settings(
        data_dir=folder,
        database_url=database_url or f"sqlite:///{folder / 'callbridge.db'}",
        ami_host="127.0.0.1",
        ami_port=ami_port,
        ami_username="bench",
        ami_secret=AMI_SECRET,
        api_token="bench-api-token-0123456789",
        secret_key="bench-secret-key-0123456789abcdef",
    )


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn (lifespan included) on a free loopback port; yields host:port."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield f"{host}:{port}"
    finally:
        server.should_exit = True
        await task


async def session_cookie(origin: str) -> str:
    """Sign the agent in through the form (CSRF token included); the session cookie."""
    async with httpx.AsyncClient(base_url=origin) as client:
        token = CSRF_RE.search((await client.get("/login")).text)
        assert token is not None, "no CSRF token on the sign-in page"
        form = {"username": AGENT, "password": PASSWORD, "csrf_token": token.group(1), "next": ""}
        response = await client.post("/login", data=form)
        assert response.status_code == 303, response.status_code
        return f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"


class PopClock:
    """Reads the agent's socket: for each pop, its latency; counts the calls that ended."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.latencies: list[float] = []
        self.ended = 0
        self.progress = asyncio.Event()

    async def run(self) -> None:
        async for message in self.ws:
            arrived = time.monotonic()
            frame = json.loads(message)
            if frame["type"] == "pop" and frame["ami_rx"] is not None:
                self.latencies.append(arrived - frame["ami_rx"])
            elif frame["type"] == "update" and frame["state"] == "ended":
                self.ended += 1
            self.progress.set()


async def replay(
    simulator: RemoteSimulator, clock: PopClock, speed: float, rounds: int, calls: int
) -> list[float]:
    """Play the trace ``rounds`` times at ``speed``; the pop latencies seen meanwhile."""
    first = len(clock.latencies)
    for _ in range(rounds):
        ended = clock.ended + calls
        await simulator.play(speed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ROUND_TIMEOUT
        while clock.ended < ended:
            clock.progress.clear()
            await asyncio.wait_for(clock.progress.wait(), max(0.0, deadline - loop.time()))
    return clock.latencies[first:]


async def measure_pops(
    settings: Settings, simulator: RemoteSimulator, calls: int, niceness: int
) -> dict[str, Any]:
    """The pop latencies at every pace, quiet and then with the other core kept busy, then
    with campaign selections asked of the service."""
    app = create_app(settings)
    async with served(app) as address:
        assert await app.state.runtime.bridge.wait_connected(timeout=10), "AMI not connected"
        quiet = await pops_at_every_pace(address, simulator, calls)
        print("  now with the other core kept busy", file=sys.stderr)
        with busy_core(niceness):
            busy = await pops_at_every_pace(address, simulator, calls)
        print("  now with campaign selections asked for meanwhile", file=sys.stderr)
        with SelectionLoop(app.state.runtime.audience) as selections:
            beside = await pops_at_every_pace(address, simulator, calls, SELECTION_PACES)
    return {
        "pops": quiet,
        "pops_busy": busy,
        "pops_selection": beside,
        "selection_seconds": selections.seconds,
        "selection_targets": selections.targets,
    }


async def pops_at_every_pace(
    address: str,
    simulator: RemoteSimulator,
    calls: int,
    paces: tuple[tuple[float, int], ...] = PACES,
) -> dict[float, list[float]]:
    """Sign the agent in to the app at ``address``, open their pop socket, and replay the
    trace at each of ``paces`` (speed, rounds): the pop latencies seen at each."""
    origin = f"http://{address}"
    headers = {"Cookie": await session_cookie(origin)}
    async with connect(f"ws://{address}/ws/pops", additional_headers=headers,
                       origin=origin, max_size=None) as ws:  # fmt: skip
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello" and hello["user"] == AGENT, hello
        clock = PopClock(ws)
        reader = asyncio.create_task(clock.run())
        try:
            results = {}
            for speed, rounds in paces:
                results[speed] = await replay(simulator, clock, speed, rounds, calls)
                print(f"  {speed:g}x: {len(results[speed])} pops", file=sys.stderr)
        finally:
            reader.cancel()
    return results


# ------------------------------------------------------------------------------- main


def build_archive(url: str, customers: int, trace: Trace) -> float:
    """Migrate and seed the archive at ``url`` with its agent; the seconds it took."""
    callers, interfaces = trace_callers_and_agents(trace)
    upgrade(url)
    engine = make_engine(url)
    started = time.perf_counter()
    seed_archive(engine, customers, callers)
    seconds = time.perf_counter() - started
    add_agent(engine, interfaces)
    engine.dispose()
    return seconds


def place_archive(folder: Path, customers: int, trace: Trace, scratch: Path | None) -> float:
    """``folder/callbridge.db`` seeded with ``customers``: built there, or copied from the one
    built once in ``scratch``; the seconds seeding took (0 for a copy)."""
    target = folder / "callbridge.db"
    if scratch is None:
        return build_archive(f"sqlite:///{target}", customers, trace)
    kept = scratch / f"pop-archive-{customers}.db"
    seconds = 0.0
    if not kept.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        seconds = build_archive(f"sqlite:///{partial}", customers, trace)
        partial.rename(kept)
    shutil.copyfile(kept, target)
    upgrade(f"sqlite:///{target}")  # a no-op unless migrations were added since it was built
    return seconds


async def run(customers: int, lookups: int, scratch: Path | None, niceness: int) -> dict[str, Any]:
    trace = load_trace(TRACE)
    callers, interfaces = trace_callers_and_agents(trace)
    with tempfile.TemporaryDirectory(prefix="pop-latency-") as folder:
        async with RemoteSimulator() as simulator:
            settings = bench_settings(Path(folder), simulator.port)
            seed_seconds = place_archive(Path(folder), customers, trace, scratch)
            engine = make_engine(settings.database_url)
            lookup_s = measure_lookups(engine, settings, len(callers) + 1, customers, lookups)
            engine.dispose()
            measured = await measure_pops(settings, simulator, len(callers), niceness)
    phases = {key: measured[key] for key in PHASES}
    return {
        "seed_seconds": seed_seconds,
        "lookup": summary(lookup_s),
        **{key: {speed: summary(v) for speed, v in by_speed.items()}
           for key, by_speed in phases.items()},  # fmt: skip
        "pop_count": sum(len(v) for by_speed in phases.values() for v in by_speed.values()),
        "selection": summary(measured["selection_seconds"]) | {
            "runs": len(measured["selection_seconds"]), "targets": measured["selection_targets"]},
        "calls": len(callers),
        "agents": len(interfaces),
        "trace_seconds": trace.duration,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--scratch", type=Path, default=None, help="keep the archive here")
    parser.add_argument(
        "--busy-niceness",
        type=int,
        default=WORKER_NICENESS,
        help="the busy process's niceness: a worker's (callbridge worker --niceness) by default",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.customers, args.lookups, args.scratch, args.busy_niceness))

    print(f"machine: {platform.machine()}, CPython {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} (over the last minute, at the end)")  # fmt: skip
    print(f"archive: {args.customers:,} customers, seeded in {result['seed_seconds']:.1f} s")
    print(f"trace: {TRACE.name}, {result['calls']} calls over {result['agents']} agents, "
          f"{result['trace_seconds']:.1f} s at 1x")  # fmt: skip
    lookup = result["lookup"]
    print(f"lookup alone ({args.lookups} random numbers): p50 {lookup['p50']} ms, "
          f"p99 {lookup['p99']} ms, max {lookup['max']} ms")  # fmt: skip
    for key, (label, _) in PHASES.items():
        for speed, figures in result[key].items():
            print(f"pop at {speed:g}x, {label}: p50 {figures['p50']} ms, "
                  f"p99 {figures['p99']} ms, max {figures['max']} ms")  # fmt: skip
    selection = result["selection"]
    print(f"campaign selections beside the pops: {selection['runs']} runs of "
          f"{selection['targets']:,} targets, p50 {selection['p50']} ms each")  # fmt: skip
    figures = {
        f"pop_{stat}_ms_{speed:g}x{suffix}": figures[stat]
        for key, (_, suffix) in PHASES.items()
        for speed, figures in result[key].items()
        for stat in ("p50", "p99", "max")
    }
    figures |= {
        "lookup_p50_ms": lookup["p50"],
        "lookup_p99_ms": lookup["p99"],
        "customers": args.customers,
        "pops": result["pop_count"],
        "selections_beside_pops": selection["runs"],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
