"""How fast the supervisors' calls page answers with a year of calls in the database.

Inserts ``--calls`` calls (default 500,000) spread over the last 365 days, with 20,000
customers, 40 agents and 5 queues, into a fresh database (SQLite file by default, or
``--database-url`` for PostgreSQL), then serves the app with uvicorn on 127.0.0.1 (fed by the
AMI simulator, as in the tests), signs a supervisor in through the sign-in form and times
``--requests`` GET requests of ``/supervisor/calls`` over real HTTP, with filters varied the way
supervisors use them: none, a day, a week, a month, an agent, a queue, a number typed in local
form, a customer's name, a direction, an outcome, combinations, flagged calls, and the next
pages (keyset cursors) of some of them.

Usage: ``python bench/calls_page.py [--calls N] [--requests N] [--database-url URL]``.
The last line is one JSON object with ``calls_page_p50_ms`` and ``calls_page_p99_ms``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import re
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from scratch_database import scratch_database
from sqlalchemy import insert

from crm_bridge.accounts.users import hash_password
from crm_bridge.app import create_app
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Customer, CustomerPhone, User
from crm_bridge.settings import Settings
from telephony.simulator import AmiSimulator

SHANGHAI = ZoneInfo("Asia/Shanghai")
CUSTOMERS = 20_000
AGENTS = [str(1001 + n) for n in range(40)]
QUEUES = ["support", "sales", "after_sales", "vip", "complaints"]
OUTCOMES = ["answered"] * 85 + ["abandoned"] * 10 + ["no_answer"] * 3 + ["busy", "failed"]
PASSWORD = "bench-password-123"
BATCH = 20_000
CALL_COLUMNS = (
    "linkedid", "server", "direction", "caller", "callee", "queue", "agent", "disposition",
    "offered_at", "answered_at", "ended_at", "wait_seconds", "talk_seconds", "customer_id",
    "created_at",
)  # fmt: skip
NEXT_LINK = re.compile(r'id="next-page" href="\?([^"]+)"')


def mobile(n: int) -> str:
    return f"+86138{n:08d}"


def fill(url: str, calls: int, rng: random.Random) -> None:
    """Customers, their phones and ``calls`` calls over the last year, inserted in batches
    straight through the driver (the app's own code reads them back, so a format slip shows)."""
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        session.add(User(username="lin", password_hash=hash_password(PASSWORD), role="supervisor"))
        session.execute(insert(Customer), [
            {"id": n + 1, "card_no": f"C{n:06d}", "name": f"客户{n}", "tags": [],
             "lunar_birthday": False, "consent_to_calls": True,
             "created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}
            for n in range(CUSTOMERS)
        ])  # fmt: skip
        session.execute(insert(CustomerPhone), [
            {"customer_id": n + 1, "number_e164": mobile(n), "kind": "mobile"}
            for n in range(CUSTOMERS)
        ])  # fmt: skip
    now = datetime.now(UTC)
    year = 365 * 24 * 3600
    sqlite = engine.dialect.name == "sqlite"

    def moment(value: datetime | None) -> object:
        """SQLite keeps times as text in SQLAlchemy's format; PostgreSQL takes them as they are."""
        if value is None or not sqlite:
            return value
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")

    marks = ", ".join(["?" if sqlite else "%s"] * len(CALL_COLUMNS))
    statement = f"INSERT INTO calls ({', '.join(CALL_COLUMNS)}) VALUES ({marks})"
    for start in range(0, calls, BATCH):
        rows = []
        for i in range(start, min(calls, start + BATCH)):
            offered = now - timedelta(seconds=rng.randrange(year))
            outcome = rng.choice(OUTCOMES)
            inbound = rng.random() < 0.85
            number = rng.randrange(CUSTOMERS * 3)  # two in three callers are not customers
            answered = outcome == "answered"
            wait = rng.uniform(1, 60)
            talk = rng.uniform(20, 600) if answered else 0.0
            rows.append((
                f"bench-{i}", "pbx1", "inbound" if inbound else "outbound",
                mobile(number) if inbound else rng.choice(AGENTS),
                "+864008001234" if inbound else mobile(number),
                rng.choice(QUEUES) if inbound else None,
                rng.choice(AGENTS) if answered else None,
                outcome if inbound or outcome != "abandoned" else "no_answer",
                moment(offered),
                moment(offered + timedelta(seconds=wait) if answered else None),
                moment(offered + timedelta(seconds=wait + talk)),
                wait, talk, number + 1 if number < CUSTOMERS else None, moment(now),
            ))  # fmt: skip
        with engine.begin() as connection:
            connection.exec_driver_sql(statement, rows)
    if not sqlite:
        # what autovacuum does soon after a bulk load in production: planner statistics
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def varied_queries(rng: random.Random, count: int) -> list[tuple[str, dict[str, str]]]:
    """Filter sets as a supervisor would type them, dates in the center's calendar."""
    today = datetime.now(SHANGHAI).date()

    def day(back: int) -> str:
        return str(today - timedelta(days=back))

    def local_form(n: int) -> str:
        digits = f"138{n:08d}"
        return f"{digits[:3]} {digits[3:7]} {digits[7:]}"

    makers = {
        "all calls": lambda: {},
        "one day": lambda: {"since": (d := day(rng.randrange(365))), "until": d},
        "one week": lambda: {"since": day(b := rng.randrange(7, 365)), "until": day(b - 6)},
        "one month": lambda: {"since": day(b := rng.randrange(30, 365)), "until": day(b - 29)},
        "agent": lambda: {"agent": rng.choice(AGENTS)},
        "queue": lambda: {"queue": rng.choice(QUEUES)},
        "number": lambda: {"number": local_form(rng.randrange(CUSTOMERS * 3))},
        "customer": lambda: {"customer": f"客户{rng.randrange(CUSTOMERS)}"},
        "outbound": lambda: {"direction": "outbound"},
        "abandoned": lambda: {"disposition": "abandoned"},
        "agent, month": lambda: {"agent": rng.choice(AGENTS),
                                 "since": day(b := rng.randrange(30, 365)), "until": day(b - 29)},
        "queue, abandoned, week": lambda: {"queue": rng.choice(QUEUES),
                                           "disposition": "abandoned",
                                           "since": day(b := rng.randrange(7, 365)),
                                           "until": day(b - 6)},
        "flagged": lambda: {"flagged": "true"},
    }  # fmt: skip
    kinds = list(makers)
    return [(kind, makers[kind]()) for kind in (rng.choice(kinds) for _ in range(count))]


async def measure(settings: Settings, requests: int, rng: random.Random) -> list[tuple[str, float]]:
    async with AmiSimulator(username="bench", secret="bench-secret") as simulator:
        settings = settings.model_copy(update={"ami_port": simulator.port})
        app = create_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        timings: list[tuple[str, float]] = []
        try:
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=60) as client:
                page = await client.get("/login")
                token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
                form = {"username": "lin", "password": PASSWORD, "csrf_token": token, "next": ""}
                assert (await client.post("/login", data=form)).status_code == 303
                await client.get("/supervisor/calls")  # warm the connection and the caches
                for kind, params in varied_queries(rng, requests):
                    started = time.perf_counter()
                    response = await client.get("/supervisor/calls", params=params)
                    timings.append((kind, (time.perf_counter() - started) * 1000))
                    assert response.status_code == 200, response.text[:200]
                    found = NEXT_LINK.search(response.text)
                    if found and rng.random() < 0.3:  # some go on to the next page
                        started = time.perf_counter()
                        more = await client.get("/supervisor/calls?" + found.group(1)
                                                .replace("&amp;", "&"))  # fmt: skip
                        timings.append((f"{kind}, next page",
                                        (time.perf_counter() - started) * 1000))  # fmt: skip
                        assert more.status_code == 200
        finally:
            server.should_exit = True
            await task
    return timings


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument(
        "--reuse", action="store_true", help="with --database-url: time an already filled database"
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        url = args.database_url or f"sqlite:///{Path(folder) / 'bench.db'}"
        if not (args.reuse and args.database_url):
            url = stack.enter_context(scratch_database(url))
            started = time.perf_counter()
            fill(url, args.calls, rng)
            filled = time.perf_counter() - started
            print(f"inserted {args.calls:,} calls and {CUSTOMERS:,} customers in {filled:.1f} s")
        settings = Settings(
            data_dir=Path(folder), database_url=url, ami_host="127.0.0.1",
            ami_username="bench", ami_secret="bench-secret",
            api_token="bench-token-0123456789", secret_key="bench-secret-key-of-some-length",
        )  # fmt: skip
        timings = asyncio.run(measure(settings, args.requests, rng))
    ordered = sorted(ms for _, ms in timings)
    p50, p99 = percentile(ordered, 0.50), percentile(ordered, 0.99)
    by_kind: dict[str, list[float]] = {}
    for kind, ms in timings:
        by_kind.setdefault(kind, []).append(ms)
    for kind, values in sorted(by_kind.items()):
        values.sort()
        print(f"  {kind:32} n={len(values):3}  p50 {percentile(values, 0.5):7.1f} ms"
              f"  max {values[-1]:7.1f} ms")  # fmt: skip
    backend = url.split(":", 1)[0]
    print(f"{len(ordered)} requests of /supervisor/calls on {backend}: "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {ordered[-1]:.1f} ms")  # fmt: skip
    print(json.dumps({
        "calls": args.calls, "requests": len(ordered), "database": backend,
        "calls_page_p50_ms": round(p50, 1), "calls_page_p99_ms": round(p99, 1),
        "python": platform.python_version(), "machine": platform.machine(),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
