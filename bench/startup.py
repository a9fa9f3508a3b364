"""bench/startup: time from exec to a listening engine (``keyturn serve`` on the embedded defaults).

    python bench/startup.py [--runs 10] [--quick]

Each run ends with ``GET /ping`` on the address the engine says it listens on; a run whose ping is not
2xx is INVALID (exit 1). Reports the median and worst of the runs; target: under 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PY, finish


def ping(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}/ping", timeout=5) as resp:
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError):
        return False


def one(work: Path) -> tuple[float, bool]:
    """Seconds from exec to the ``started`` log line, and whether the engine then answered /ping."""
    (work / "engine.yaml").write_text(
        "api: {development: true, port: 0}\naudit: {sinks: [file], file: audit.jsonl}\n"
    )
    started = time.perf_counter()
    proc = subprocess.Popen(
        [PY, "-m", "engine", "serve", "-c", "engine.yaml"],
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if line.get("event") == "started":
                took = time.perf_counter() - started
                return took, ping(line["listen"][0])
        raise RuntimeError("the engine exited before it started")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="a self-check: 2 runs")
    args = parser.parse_args()
    if args.quick:
        args.runs = 2
    times, failed = [], 0
    for _ in range(args.runs):
        # each run starts on an empty directory: it also creates the database
        with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
            took, answered = one(Path(tmp))
            times.append(took)
            failed += not answered
    finish(
        "startup_quick" if args.quick else "startup",
        {
            "runs": args.runs,
            "seconds_median": round(statistics.median(times), 3),
            "seconds_max": round(max(times), 3),
            "target_seconds": 1.0,
        },
        failed,
    )


if __name__ == "__main__":
    main()
