"""bench/startup: time from exec to a listening engine (``keyturn serve`` on the embedded defaults).

    python bench/startup.py [--runs 10]

Reports the median and worst of the runs; target: under 1 s.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PY, report


def one(work: Path) -> float:
    (work / "engine.yaml").write_text("api: {development: true, port: 0}\naudit: {sinks: []}\n")
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
                if json.loads(raw).get("event") == "started":
                    return time.perf_counter() - started
            except ValueError:
                continue
        raise RuntimeError("the engine exited before it started")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
            times.append(
                one(Path(tmp))
            )  # each run starts on an empty directory: it also creates the database
    report(
        "startup",
        {
            "runs": args.runs,
            "seconds_median": round(statistics.median(times), 3),
            "seconds_max": round(max(times), 3),
            "target_seconds": 1.0,
        },
    )


if __name__ == "__main__":
    main()
