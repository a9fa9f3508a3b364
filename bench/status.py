"""bench/status: GET /v1/auth/status on 1,000 distinct completed grants vs aiohttp hello-world, same run.

    python bench/status.py [--runs 5] [--duration 5] [--connections 64] [--threads 2] [--grants 1000]
                           [--quick]

wrk sends the grant ids round robin; every answer must be 2xx and say "completed" (hello-world answers
the same shape), or the run is INVALID (exit 1). Runs alternate engine and hello-world; each run also
measures one (cached) grant id and ``/ping``. The audit goes to a file sink, as in production.
Target (issue 19): engine rps >= 0.5 x hello-world; the median of the per-run ratios is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import wrk
from bench.harness import (
    PY,
    Proc,
    engine_argv,
    finish,
    free_port,
    keep_logs,
    load_average,
    median_of,
    ratios,
    wait_http,
    with_cpu,
)
from bench.loadargs import load_parser, run_on_database
from bench.pgseed import sa_url
from bench.seed import API_KEY, seed, write_config


def main() -> None:
    args = load_parser(__doc__, population="grants").parse_args()
    run_on_database(args, measure, population="grants")


def measure(args: argparse.Namespace, dbname: str | None) -> None:
    result_name = "status" + ("_postgres" if dbname else "") + ("_quick" if args.quick else "")
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        port, hello_port = free_port(), free_port()
        cfg = write_config(
            work,
            port=port,
            storage=sa_url(dbname) if dbname else f"sqlite+aiosqlite:///{work}/kt.db",
            processes=args.processes,
            event_loop=args.event_loop,
        )
        ids = asyncio.run(seed(cfg, args.grants))
        engine = Proc(engine_argv(cfg, "status"), cwd=work, log=work / "engine.log")
        hello = Proc([PY, str(Path(__file__).with_name("hello.py")), str(hello_port)])
        engine_url, hello_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{hello_port}"
        auth = {"Authorization": f"Bearer {API_KEY}"}
        grants = [(f"/v1/auth/status?id={i}", None) for i in ids]
        common = {"connections": args.connections, "threads": args.threads, "duration": args.duration}
        runs: dict[str, list[dict[str, float]]] = {"engine": [], "hello": [], "one_id": [], "ping": []}
        try:
            wait_http(f"{engine_url}/ping")
            load_before = load_average()
            wait_http(f"{hello_url}/")
            for _ in range(args.runs):
                runs["engine"].append(
                    with_cpu(
                        engine,
                        lambda: wrk.run(engine_url, grants, headers=auth, expect="completed", **common),
                    )
                )
                runs["hello"].append(
                    with_cpu(hello, lambda: wrk.run(hello_url, grants, expect="completed", **common))
                )
                runs["one_id"].append(
                    wrk.run(engine_url, grants[:1], headers=auth, expect="completed", **common)
                )
                runs["ping"].append(wrk.run(engine_url, [("/ping", None)], **common))
            rss = engine.rss_mb()
        finally:
            engine.stop()
            hello.stop()
            keep_logs(work, result_name)
    per_run = ratios(runs["engine"], runs["hello"])
    failed = {k: int(sum(r["failed"] for r in v)) for k, v in runs.items()}
    finish(
        result_name,
        {
            "storage": "postgresql" if dbname else "sqlite",
            "processes": args.processes,
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "load_generator": f"wrk, {args.threads} threads",
            "runs": args.runs,
            "event_loop": args.event_loop,
            "duration_s": args.duration,
            "connections": args.connections,
            "grants": args.grants,
            "engine_rps_median": round(median_of(runs["engine"], "rps")),
            "hello_rps_median": round(median_of(runs["hello"], "rps")),
            "ratio_median": round(statistics.median(per_run), 3),
            "ratios": [round(r, 3) for r in per_run],
            "target_ratio": 0.5,
            "engine_p50_ms": round(median_of(runs["engine"], "p50_ms"), 2),
            "engine_p99_ms": round(median_of(runs["engine"], "p99_ms"), 2),
            # CPU per request (engine process vs hello-world process): counts work, not waiting for a core
            "engine_cpu_us_per_request_median": round(median_of(runs["engine"], "cpu_us_per_request")),
            "hello_cpu_us_per_request_median": round(median_of(runs["hello"], "cpu_us_per_request")),
            "cpu_ratio_median": round(
                statistics.median(ratios(runs["hello"], runs["engine"], "cpu_us_per_request")), 3
            ),
            "one_id_rps_median": round(median_of(runs["one_id"], "rps")),
            "ping_rps_median": round(median_of(runs["ping"], "rps")),
            "failed_by_load": failed,
            "engine_rss_mb": round(rss, 1),
        },
        sum(failed.values()),
    )


if __name__ == "__main__":
    main()
