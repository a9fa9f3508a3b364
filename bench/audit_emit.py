"""Microbenchmark: the CPU cost of one ``Auditor.emit`` into a file sink (issue 19, round 4).

    python bench/audit_emit.py                    # median of 7 repeats x 20,000 records, two shapes
    python bench/audit_emit.py --records 2000 --repeats 1 --shape turn   # for callgrind

Each record is a ``tool.executed`` as the execute path emits it (user id hashed, a new request id
bound in the context for each, tool, duration, worker), written to a file sink in a temporary
directory. Two shapes:

- ``burst``: 16 records per event-loop turn (a loaded engine finishes several requests per turn);
- ``turn``: one record per loop turn (the worst case for batching: one write per record either way).

The time per record includes writing every record to the file (the queue is drained before the clock
stops), so the numbers compare the same work before and after. Printed as JSON (µs per record).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# the engine to measure: this checkout, or the one in $AUDIT_BENCH_ROOT (e.g. `git archive main` unpacked)
sys.path.insert(0, os.environ.get("AUDIT_BENCH_ROOT") or str(Path(__file__).resolve().parents[1]))

import structlog

from engine.audit import Auditor
from engine.config.model import AuditConfig

SALT = bytes(range(32))


async def _drain(auditor: Auditor) -> None:
    flush = getattr(auditor, "flush", None)
    if flush is not None:
        await flush()


async def run_once(auditor: Auditor, records: int, per_turn: int) -> float:
    start = time.process_time()
    for i in range(records):
        structlog.contextvars.bind_contextvars(request_id=f"{i:016x}")  # a new id per request
        auditor.emit(
            "tool.executed",
            outcome="success",
            tool="Echo.Ping",
            user_id=f"user-{i % 1000}@example.com",
            duration=0.00123,
            worker="echo",
        )
        if (i + 1) % per_turn == 0:
            await asyncio.sleep(0)
    await _drain(auditor)
    return (time.process_time() - start) / records * 1e6


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {"records": args.records, "repeats": args.repeats}
    every = {"burst": 16, "turn": 1}
    shapes = every if args.shape == "both" else {args.shape: every[args.shape]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        auditor = Auditor(AuditConfig(sinks=("file",), file=str(path)), SALT)
        start = getattr(auditor, "start", None)
        if start is not None:
            start()
        for shape, per_turn in shapes.items():
            samples = [await run_once(auditor, args.records, per_turn) for _ in range(args.repeats)]
            out[shape] = {
                "us_per_record_median": round(statistics.median(samples), 2),
                "us_per_record_min": round(min(samples), 2),
            }
        await auditor.aclose()
        out["line_example"] = path.read_text().splitlines()[-1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--shape", choices=("both", "burst", "turn"), default="both")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main_async(args)), indent=2))


if __name__ == "__main__":
    main()
