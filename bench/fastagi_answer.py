"""FastAGI answer time of routing by customer value, on a real socket.

What runs is callbridge's own routing (``crm_bridge/routing/service.py``): the FastAGI server of
``telephony/fastagi.py`` on 127.0.0.1, the caller's facts read from a real SQLite archive of
``--customers`` customers (each with a phone, a VIP level for one in five, purchases, an open
complaint for one in twenty, an account manager for one in ten) and the decision under rules
that use every kind.

What stands in for Asterisk, in a process of its own (as Asterisk is): a client that does what
res_agi does for ``AGI(agi://127.0.0.1:PORT/route,<number>)``, on blocking sockets, one thread
per call as Asterisk has: connect, send the ``agi_*`` environment, read the ``SET
VARIABLE`` command, reply ``200 result=1``, and see the server close.

The answer time is from the client's connect to the server's close (when res_agi's AGI() ends
and the dialplan has the answer), for ``--requests`` calls one after another (random callers,
some unknown), then the same in bursts of ``--burst`` calls at once. The server's own time
(accept to last reply) is printed too. Usage: ``python bench/fastagi_answer.py [--customers N]
[--requests N] [--burst N]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import insert

from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from crm_bridge.db.models import (
    AccountManager,
    Complaint,
    Customer,
    CustomerPhone,
    Purchase,
    RoutingSettings,
    RoutingTier,
)
from crm_bridge.routing.service import Routing

ZONE = ZoneInfo("Asia/Shanghai")
TIERS = ("金卡", "银卡", "钻石卡")


def number_of(i: int) -> str:
    return f"139{i:08d}"


def build_archive(url: str, customers: int) -> None:
    upgrade(url)
    engine = make_engine(url)
    today = date.today()
    with engine.begin() as connection:
        connection.execute(insert(Customer), [
            {"id": i, "card_no": f"B{i:07d}", "name": f"客户{i}",
             "vip_level": TIERS[i % 3] if i % 5 == 0 else None, "tags": []}
            for i in range(1, customers + 1)
        ])  # fmt: skip
        connection.execute(insert(CustomerPhone), [
            {"customer_id": i, "number_e164": "+86" + number_of(i), "kind": "mobile"}
            for i in range(1, customers + 1)
        ])  # fmt: skip
        connection.execute(insert(Purchase), [
            {"customer_id": i, "purchased_on": today - timedelta(days=(i * 7 + k) % 500),
             "amount": (i * 37 + k * 101) % 9000}
            for i in range(1, customers + 1) for k in range(3)
        ])  # fmt: skip
        connection.execute(insert(Complaint), [
            {"customer_id": i, "received_at": datetime.now(UTC), "content": "…", "status": "open"}
            for i in range(20, customers + 1, 20)
        ])  # fmt: skip
        connection.execute(insert(AccountManager), [
            {"customer_id": i, "extension": "1001"} for i in range(10, customers + 1, 10)
        ])  # fmt: skip
        connection.execute(insert(RoutingTier), [
            {"tier": "金卡", "priority": 10}, {"tier": "钻石卡", "priority": 20}
        ])  # fmt: skip
        connection.execute(insert(RoutingSettings), [
            {"id": 1, "high_value_cents": 1_000_000, "high_value_priority": 5,
             "manager_ring_seconds": 15, "complaint_queue": "senior"}
        ])  # fmt: skip
    engine.dispose()


def environment(number: str) -> bytes:
    lines = {
        "agi_network": "yes", "agi_network_script": "route",
        "agi_request": "agi://127.0.0.1/route", "agi_channel": "Local/1.1@callbridge-route-ask-1;2",
        "agi_language": "en", "agi_type": "Local", "agi_uniqueid": "1764000000.2",
        "agi_version": "22.0.0", "agi_callerid": number, "agi_calleridname": "unknown",
        "agi_callingpres": "0", "agi_context": "callbridge-route-ask", "agi_extension": "1.1",
        "agi_priority": "5", "agi_enhanced": "0.0", "agi_accountcode": "", "agi_threadid": "1",
        "agi_arg_1": number,
    }  # fmt: skip
    return ("".join(f"{k}: {v}\n" for k, v in lines.items()) + "\n").encode()


def one_request(port: int, number: str) -> float:
    """One AGI() as res_agi makes it; the seconds from the connect to the server's close."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(environment(number))
        stream = sock.makefile("rb")
        command = stream.readline()
        assert command.startswith(b"SET VARIABLE CC_ROUTE_ANSWER"), command
        sock.sendall(b"200 result=1\n")
        assert stream.read() == b""
    return time.perf_counter() - started


def client(port: int, numbers: list[str], burst: int) -> dict[str, list[float]]:
    """The Asterisk side: the requests one after another, then in bursts on threads."""
    for number in numbers[:50]:  # warm up: queries compiled, pages cached
        one_request(port, number)
    sequential = [one_request(port, n) for n in numbers]
    bursts: list[float] = []
    with ThreadPoolExecutor(burst) as pool:
        for start in range(0, len(numbers), burst):
            chunk = numbers[start : start + burst]
            bursts += pool.map(lambda n: one_request(port, n), chunk)
    return {"sequential": sequential, "bursts": bursts}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def figures(name: str, seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    result = {"p50_ms": round(statistics.median(ms), 3), "p99_ms": round(percentile(ms, 0.99), 3),
              "max_ms": round(max(ms), 3)}  # fmt: skip
    print(f"{name}: n={len(ms)} p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
          f"max {result['max_ms']} ms")  # fmt: skip
    return result


async def run(customers: int, requests: int, burst: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        started = time.perf_counter()
        build_archive(url, customers)
        print(f"archive of {customers} customers built in {time.perf_counter() - started:.1f} s")
        sessions = make_session_factory(make_engine(url))
        routing = Routing(sessions, host="127.0.0.1", port=0, zone=ZONE, region="CN",
                          outside_line_prefix=None,
                          agent_ready=lambda ext: ext == "1001")  # fmt: skip
        await routing.start()
        try:
            rng = random.Random(7)
            numbers = [number_of(rng.randint(1, customers * 11 // 10)) for _ in range(requests)]
            asterisk = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", str(routing.server.port), str(burst),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asterisk.communicate(json.dumps(numbers).encode())
            times = json.loads(out)
            server_side = list(routing.answer_seconds)
        finally:
            await routing.stop()
        sessions.kw["bind"].dispose()
    sequential, bursts = times["sequential"], times["bursts"]
    one_by_one = figures("one request at a time (Asterisk side: connect -> close)", sequential)
    at_once = figures(f"bursts of {burst} at once (Asterisk side: connect -> close)", bursts)
    server = figures("server side, accept -> last reply (all requests)", server_side)
    return {"customers": customers, "requests": requests, "burst": burst,
            "answer_p50_ms": one_by_one["p50_ms"], "answer_p99_ms": one_by_one["p99_ms"],
            "burst_p50_ms": at_once["p50_ms"], "burst_p99_ms": at_once["p99_ms"],
            "server_p50_ms": server["p50_ms"], "server_p99_ms": server["p99_ms"]}  # fmt: skip


def main() -> None:
    if sys.argv[1:2] == ["--client"]:
        port, burst = int(sys.argv[2]), int(sys.argv[3])
        print(json.dumps(client(port, json.load(sys.stdin), burst)))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--burst", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.customers, args.requests, args.burst)),
                     ensure_ascii=False))  # fmt: skip


if __name__ == "__main__":
    main()
