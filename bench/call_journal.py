"""Ended-call journal benchmark: what journaling every call costs.

Times :meth:`crm_bridge.calls.journal.CallJournal.append` (write and fsync) for ``--calls`` calls
one at a time, then in batches of ``--batch`` (the calls that end in one turn of the bridge's
event loop share one fsync), in a temporary folder on the file system of ``--folder``; and
:meth:`~crm_bridge.calls.journal.CallJournal.done` (no fsync) for each.

The last line printed is one JSON object with the per-call figures in milliseconds.

    .venv/bin/python bench/call_journal.py [--calls 500] [--batch 10] [--folder .]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from crm_bridge.calls.journal import CallJournal
from telephony.call_events import CallRecord, Direction, Disposition, EndReason


def a_call(n: int) -> CallRecord:
    return CallRecord(
        linkedid=f"1700000000.{n}",
        server="default",
        direction=Direction.INBOUND,
        caller="13800138000",
        caller_name="张三",
        callee="600",
        queue="support",
        agent="1001",
        agent_interface="PJSIP/1001",
        offered_at=1_700_000_000.0 + n,
        answered_at=1_700_000_004.0 + n,
        ended_at=1_700_000_064.0 + n,
        disposition=Disposition.ANSWERED,
        hangup_cause=16,
        hangup_cause_text="Normal Clearing",
        recording_path=f"/var/spool/asterisk/monitor/2026/11/23/in-{n}.wav",
        agents_rung=["1001"],
        end_reason=EndReason.HANGUP,
    )


def timed(journal: CallJournal, calls: list[CallRecord], batch: int) -> list[float]:
    """Seconds per call of each append (a batch's time shared by its calls), then marks done."""
    per_call = []
    for at in range(0, len(calls), batch):
        chunk = calls[at : at + batch]
        start = time.perf_counter()
        journal.append(chunk)
        per_call += [(time.perf_counter() - start) / len(chunk)] * len(chunk)
    return per_call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--folder", type=Path, default=Path("."))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        journal = CallJournal.load(Path(folder))
        try:
            calls = [a_call(n) for n in range(args.calls)]
            single = timed(journal, calls, 1)
            start = time.perf_counter()
            for call in calls:
                journal.done([call.linkedid])
            done_ms = (time.perf_counter() - start) / len(calls) * 1e3
            batched = timed(
                journal, [a_call(n + args.calls) for n in range(args.calls)], args.batch
            )
        finally:
            journal.close()
    result = {
        "calls": args.calls,
        "append_ms_p50": round(statistics.median(single) * 1e3, 3),
        "append_ms_p99": round(sorted(single)[int(len(single) * 0.99) - 1] * 1e3, 3),
        "append_ms_per_call_batched": round(statistics.mean(batched) * 1e3, 3),
        "batch": args.batch,
        "done_ms": round(done_ms, 4),
    }
    one, batched_ms = result["append_ms_p50"], result["append_ms_per_call_batched"]
    print(f"append+fsync, one call: p50 {one} ms, p99 {result['append_ms_p99']} ms")
    print(f"append+fsync, {args.batch} calls at once: {batched_ms} ms a call")
    print(f"done (no fsync): {result['done_ms']} ms a call")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
