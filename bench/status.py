"""bench/status: GET /v1/auth/status on completed grants vs an aiohttp hello-world app, same run.

    python bench/status.py [--runs 5] [--duration 5] [--concurrency 64] [--grants 1000]

Target: engine rps >= 0.4 x hello-world rps. Reports the median of the per-run ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PY, Proc, free_port, load, median_of, report, wait_http
from bench.seed import API_KEY, seed, write_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--grants", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        port, hello_port = free_port(), free_port()
        cfg = write_config(work, port=port, storage=f"sqlite+aiosqlite:///{work}/kt.db")
        ids = asyncio.run(seed(cfg, args.grants))
        urls = work / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/v1/auth/status?id={i}\n" for i in ids))
        engine = Proc([PY, "-m", "engine", "serve", "-c", str(cfg)], cwd=work, log=work / "engine.log")
        hello = Proc([PY, str(Path(__file__).with_name("hello.py")), str(hello_port)])
        try:
            wait_http(f"http://127.0.0.1:{port}/ping")
            wait_http(f"http://127.0.0.1:{hello_port}/")
            engine_runs, hello_runs, ratios = [], [], []
            for _ in range(args.runs):
                e = load(
                    [],
                    concurrency=args.concurrency,
                    duration=args.duration,
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    url_file=urls,
                )
                h = load(
                    [f"http://127.0.0.1:{hello_port}/v1/auth/status?id=x"],
                    concurrency=args.concurrency,
                    duration=args.duration,
                )
                engine_runs.append(e)
                hello_runs.append(h)
                ratios.append(e["rps"] / h["rps"] if h["rps"] else 0.0)
            rss = engine.rss_mb()
        finally:
            engine.stop()
            hello.stop()
    errors = sum(r["errors"] for r in engine_runs)
    report(
        "status",
        {
            "runs": args.runs,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "grants": args.grants,
            "engine_rps_median": round(median_of(engine_runs, "rps")),
            "hello_rps_median": round(median_of(hello_runs, "rps")),
            "ratio_median": round(statistics.median(ratios), 3),
            "target_ratio": 0.4,
            "engine_p50_ms": round(median_of(engine_runs, "p50_ms"), 2),
            "engine_p99_ms": round(median_of(engine_runs, "p99_ms"), 2),
            "engine_errors": errors,
            "engine_rss_mb": round(rss, 1),
        },
    )


if __name__ == "__main__":
    main()
