"""CDR reconciliation benchmark: what the look at Asterisk's own records costs at start-up.

Writes a ``dialplans/cdr_custom.conf``-shaped file of ``--calls`` inbound calls (two CDRs each:
the customer's leg and the answering agent's), of which all but ``--missing`` are already in
the call log (a migrated SQLite database in a temporary folder), then times one
:class:`crm_bridge.calls.cdr_reconcile.CdrReconciler` pass: reading the file, checking which calls
are logged, logging the missing ones. The service is not in step (no campaign attempt is
settled as lost) while this runs.

The last line printed is one JSON object.

    .venv/bin/python bench/cdr_reconcile.py [--calls 5000] [--missing 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from crm_bridge.calls.call_log import CallLog, NumberRules
from crm_bridge.calls.cdr_reconcile import CdrReconciler
from crm_bridge.db.engine import make_engine, make_session_factory
from crm_bridge.db.migrate import upgrade
from telephony.call_events import CallRecord, Direction, Disposition

START = 1_796_000_000.0


def cdr_lines(n: int) -> str:
    """The two CDRs of the inbound call number ``n`` (as the PBX kit's Asterisk writes them)."""
    lid, at = f"{START + n * 10:.0f}.{n}", START + n * 10
    first = [lid, lid, at, at + 0.01, at + 60, "ANSWERED", f"138{n:08d}", "4008001234",
             "from-customers", f"PJSIP/carrier-{n:08x}", f"Local/1001@agents-{n:08x};1",
             "Queue", "support,,,,3600", f"inbound;cid=138{n:08d}", "", ""]  # fmt: skip
    agent = [lid, f"{lid}1", at + 0.02, at + 4, at + 60, "ANSWERED", f"138{n:08d}", "1001",
             "agents", f"Local/1001@agents-{n:08x};2", f"PJSIP/1001-{n:08x}", "Dial",
             "PJSIP/1001,,i", "", "", ""]  # fmt: skip
    return "".join(",".join(f'"{v}"' for v in row) + "\n" for row in (first, agent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--missing", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/callbridge.db"
        upgrade(url)
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        call_log = CallLog(sessions, NumberRules("CN"))
        cdr_file = Path(folder) / "callbridge.csv"
        cdr_file.write_text("".join(cdr_lines(n) for n in range(args.calls)))
        for n in range(args.missing, args.calls):  # seen live
            at = START + n * 10
            call_log.record(CallRecord(
                linkedid=f"{at:.0f}.{n}", server="default", direction=Direction.INBOUND,
                caller=f"138{n:08d}", offered_at=at, answered_at=at + 4, ended_at=at + 60,
                disposition=Disposition.ANSWERED,
            ))  # fmt: skip
        reconciler = CdrReconciler(
            cdr_file, "default", sessions, call_log,
            agent_contexts=("internal",), lookback_seconds=10 * START,
        )  # fmt: skip
        began = time.perf_counter()
        logged = reconciler(START + args.calls * 10 + 100, set())
        seconds = time.perf_counter() - began
        engine.dispose()
    assert logged == args.missing, logged
    result = {
        "calls_in_file": args.calls,
        "cdr_lines": 2 * args.calls,
        "missing_logged": logged,
        "seconds": round(seconds, 3),
        "ms_per_missing_call": round(seconds / max(logged, 1) * 1e3, 2),
    }
    print(f"{2 * args.calls} CDR lines, {logged} calls missing from the call log: {seconds:.3f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
