"""Campaign benchmark: choosing today's targets among 1,000,000 customers, and the dialer's pace.

1. Fills a fresh database (SQLite in a temporary folder, or ``--database-url``) with
   ``--customers`` customers (born 1950 to 2014, so some are minors; one in ten keeps a lunar
   birthday, one in a hundred is tagged 重要, one in a thousand 儿童) and as many purchases over
   the last half month in 20 departments, then times
   :func:`crm_bridge.campaigns.audience.select_campaign_audience` of a marketing campaign (the
   minors left out) for today's solar and lunar birthdays plus the half month's top 10
   spenders of each department and the important customers.
2. Dials ``--calls`` Originates through the AMI simulator (a real socket) at ``--pace`` calls
   per second, and compares the pace achieved (first to last Originate sent) with the set one.

With ``--plans``, the database's plan for each query of the selection is printed first.
The last line printed is one JSON object with ``select_seconds`` (and each rule's seconds) and
``pace_ratio``.

    .venv/bin/python bench/campaign_select.py [--customers 1000000] [--calls 50] [--pace 5]
        [--database-url URL] [--plans] [--scratch DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from psycopg.types.json import Jsonb
from scratch_database import scratch_database
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from crm_bridge.campaigns.audience import select_campaign_audience
from crm_bridge.campaigns.rules import (
    BirthdayRule,
    TopSpendersRule,
    last_half_month,
    rule_query,
)
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import Customer, DepartmentSpend, Purchase
from telephony.ami_connection import AmiConfig
from telephony.dialer import Dialer, OriginateRequest
from telephony.simulator import AmiSimulator

ZONE = ZoneInfo("Asia/Shanghai")
BATCH = 20_000
DEPARTMENTS = [f"部门{i:02d}" for i in range(20)]


def fill(url: str, customers: int, today: date) -> None:
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(20261123)
    first, last = last_half_month(today)
    span = (last - first).days
    now = datetime.now(UTC)
    with engine.begin() as connection:
        for start in range(0, customers, BATCH):
            rows, buys = [], []
            for i in range(start, min(start + BATCH, customers)):
                lunar = i % 10 == 0
                rows.append(
                    {
                        "id": i + 1,
                        "card_no": f"B{i:08d}",
                        "name": f"客户{i}",
                        "birthday": date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 65)),
                        "lunar_birthday": lunar,
                        "lunar_birth_month": rng.randint(1, 12) if lunar else None,
                        "lunar_birth_day": rng.randint(1, 30) if lunar else None,
                        "tags": ["重要"] if i % 100 == 0 else ["儿童"] if i % 1000 == 1 else [],
                        "consent_to_calls": True,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
                buys.append(
                    {
                        "customer_id": i + 1,
                        "purchased_on": first + timedelta(days=rng.randint(0, span)),
                        "department": rng.choice(DEPARTMENTS),
                        "amount": rng.randint(1, 500_000) / 100,
                    }
                )
            connection.execute(insert(Customer), rows)
            connection.execute(insert(Purchase), buys)
    if engine.dialect.name == "postgresql":
        # what autovacuum does soon after a bulk load in production: planner statistics
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("ANALYZE")
    engine.dispose()


def print_plans(session: Session, today: date) -> None:
    """The database's plan for the birthday query, one department's top-spender reads and the
    important customers."""
    postgresql = session.get_bind().dialect.name == "postgresql"
    first, _ = last_half_month(today)
    spend = DepartmentSpend
    of_department = (spend.half_month == first, spend.department == DEPARTMENTS[0])
    queries = {
        "birthday": rule_query(session, BirthdayRule(), today, ZONE, "CN"),
        "next department": select(func.min(spend.department)).where(spend.half_month == first),
        "top-n threshold": select(spend.cents)
        .where(*of_department)
        .order_by(spend.cents.desc())
        .offset(9)
        .limit(1),
        "important": rule_query(session, TopSpendersRule(top_n=10), today, ZONE, "CN"),
    }
    for name, query in queries.items():
        if postgresql:  # bound as the app binds them: a JSONB value has no literal form
            expand = {"render_postcompile": True}
            compiled = query.compile(session.get_bind(), compile_kwargs=expand)
            params = {k: Jsonb(v) if isinstance(v, list) else v for k, v in compiled.params.items()}
            rows = session.connection().exec_driver_sql(f"EXPLAIN ANALYZE {compiled}", params)
        else:
            sql = query.compile(session.get_bind(), compile_kwargs={"literal_binds": True})
            rows = session.execute(text(f"EXPLAIN QUERY PLAN {sql}")).all()
        print(f"-- {name}")
        for row in rows:
            print("   ", row[-1])


def time_selection(url: str, today: date, plans: bool) -> tuple[float, dict[str, int]]:
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    counts: dict[str, float] = {}
    with sessions() as session:
        if plans:
            print_plans(session, today)
        started = time.perf_counter()
        everyone = select_campaign_audience(
            session,
            [BirthdayRule(), TopSpendersRule(top_n=10, include_important=True)],
            today,
            ZONE,
            "CN",
            marketing=True,
        ).ids
        seconds = time.perf_counter() - started
        for name, rule in (
            ("birthday", BirthdayRule()),
            ("top_spenders", TopSpendersRule(top_n=10, include_important=False)),
            ("top_spenders_and_important", TopSpendersRule(top_n=10)),
        ):
            started = time.perf_counter()
            picked = select_campaign_audience(session, [rule], today, ZONE, "CN", marketing=True)
            counts[name] = len(picked.ids)
            counts[f"{name}_seconds"] = round(time.perf_counter() - started, 3)
        counts["union"] = len(everyone)
    engine.dispose()
    return seconds, counts


async def measure_pace(calls: int, pace: float) -> tuple[float, float]:
    async with AmiSimulator(
        secret="bench-secret", originate_outcome=lambda _h: "congestion", originate_speed=0
    ) as sim:
        config = AmiConfig(
            host="127.0.0.1", port=sim.port, username="bridge", secret="bench-secret", events="call"
        )
        dialer = Dialer(config, max_concurrent=calls, calls_per_second=pace)
        await dialer.start()
        await dialer.wait_connected(5)

        def request() -> OriginateRequest:
            channel_id = str(uuid.uuid4())
            return OriginateRequest(
                channel="PJSIP/13900000004@carrier",
                context="outbound-campaign",
                exten="return-visit",
                channel_id=channel_id,
                action_id=f"bench-{channel_id}",
            )

        try:
            await asyncio.gather(*(dialer.dial(request()) for _ in range(calls)))
        finally:
            await dialer.stop()
        sent = dialer.sent_at
        achieved = (len(sent) - 1) / (sent[-1] - sent[0])
    return achieved, achieved / pace


def timed_fill(url: str, customers: int, today: date) -> None:
    started = time.perf_counter()
    fill(url, customers, today)
    print(f"filled {customers:,} customers and purchases in {time.perf_counter() - started:.1f} s")


def kept_sqlite(scratch: Path, customers: int, today: date) -> str:
    """The URL of a SQLite archive filled once for this half month in ``scratch``."""
    kept = scratch / f"campaign-{customers}-{last_half_month(today)[0]}.db"
    if not kept.exists():
        scratch.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        timed_fill(f"sqlite:///{partial}", customers, today)
        partial.rename(kept)
    upgrade(f"sqlite:///{kept}")  # a no-op unless migrations were added since it was filled
    return f"sqlite:///{kept}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--pace", type=float, default=5.0)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--plans", action="store_true", help="print each query's plan")
    parser.add_argument(
        "--scratch", type=Path, default=None, help="SQLite: fill once into this folder, reuse"
    )
    args = parser.parse_args()
    today = datetime.now(ZONE).date()
    with (
        tempfile.TemporaryDirectory() as folder,
        scratch_database(args.database_url or f"sqlite:///{folder}/bench.db") as url,
    ):
        if args.scratch is not None and not args.database_url:
            url = kept_sqlite(args.scratch, args.customers, today)
        else:
            timed_fill(url, args.customers, today)
        seconds, counts = time_selection(url, today, args.plans)
    print(f"today's targets ({today}): {counts}")
    print(
        f"selection (birthdays solar+lunar, half-month top 10 per department + important): "
        f"{seconds:.2f} s"
    )
    achieved, ratio = asyncio.run(measure_pace(args.calls, args.pace))
    print(
        f"dialer: {args.calls} Originates at a set {args.pace:g}/s: achieved "
        f"{achieved:.3f}/s (ratio {ratio:.3f})"
    )
    print(
        json.dumps(
            {
                "customers": args.customers,
                "select_seconds": round(seconds, 3),
                "targets": counts["union"],
                **{key: value for key, value in counts.items() if key.endswith("_seconds")},
                "set_pace": args.pace,
                "achieved_pace": round(achieved, 3),
                "pace_ratio": round(ratio, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
