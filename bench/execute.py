"""bench/execute: POST /v1/tools/execute through Keyturn to a no-op worker vs calling the worker directly.

    python bench/execute.py [--runs 5] [--duration 5] [--concurrency 64] [--users 1000]

1,000 distinct users hold grants; each request runs ``Echo.Ping`` (needs the user's authorization,
does nothing) for the next user. The baseline posts the same ToolCallRequest straight to the
worker's /worker/tools/invoke. Targets: rps >= 0.5 x direct; engine-added p50 <= 2 ms, p99 <= 10 ms.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import PY, ROOT, Proc, free_port, load, median_of, report, wait_http
from bench.seed import API_KEY, seed, write_config
from engine.tools.worker import worker_token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    secret = "bench-worker-secret-0123456789abcdef"
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        port, wport = free_port(), free_port()
        extra = f"workers: [{{id: echo, uri: 'http://127.0.0.1:{wport}', secret: '{secret}'}}]"
        cfg = write_config(work, port=port, storage=f"sqlite+aiosqlite:///{work}/kt.db", extra=extra)
        asyncio.run(seed(cfg, args.users))
        bodies = work / "bodies.txt"
        bodies.write_text(
            "".join(
                json.dumps({"tool_name": "Echo.Ping", "input": {}, "user_id": f"user{i:07d}@bench.test"})
                + "\n"
                for i in range(args.users)
            )
        )
        direct = work / "direct.txt"
        direct.write_text(
            "".join(
                json.dumps(
                    {
                        "execution_id": f"x{i}",
                        "tool": {"name": "Ping", "toolkit": "Echo"},
                        "inputs": {},
                        "context": {
                            "user_id": f"user{i:07d}@bench.test",
                            "authorization": {"token": "at-bench", "user_info": {}},
                        },
                    }
                )
                + "\n"
                for i in range(args.users)
            )
        )
        worker = Proc(
            [PY, str(ROOT / "examples" / "worker" / "echo_worker.py"), str(wport)],
            env={"ARCADE_WORKER_SECRET": secret, "ACME_USERINFO_URL": "http://127.0.0.1:1/"},
            log=work / "worker.log",
        )
        engine = Proc([PY, "-m", "engine", "serve", "-c", str(cfg)], cwd=work, log=work / "engine.log")
        try:
            wait_http(f"http://127.0.0.1:{port}/ping")
            wait_http(f"http://127.0.0.1:{wport}/worker/health")
            token = worker_token(secret, now=time.time() + 3000)  # valid for the whole run
            engine_runs, direct_runs, ratios = [], [], []
            for _ in range(args.runs):
                e = load(
                    [f"http://127.0.0.1:{port}/v1/tools/execute"],
                    concurrency=args.concurrency,
                    duration=args.duration,
                    method="POST",
                    body_file=bodies,
                    headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
                )
                d = load(
                    [f"http://127.0.0.1:{wport}/worker/tools/invoke"],
                    concurrency=args.concurrency,
                    duration=args.duration,
                    method="POST",
                    body_file=direct,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                )
                engine_runs.append(e)
                direct_runs.append(d)
                ratios.append(e["rps"] / d["rps"] if d["rps"] else 0.0)
            single_e = load(
                [f"http://127.0.0.1:{port}/v1/tools/execute"],
                concurrency=1,
                duration=args.duration,
                method="POST",
                body_file=bodies,
                headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            )
            single_d = load(
                [f"http://127.0.0.1:{wport}/worker/tools/invoke"],
                concurrency=1,
                duration=args.duration,
                method="POST",
                body_file=direct,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            rss = engine.rss_mb()
        finally:
            engine.stop()
            worker.stop()
    report(
        "execute",
        {
            "runs": args.runs,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "users": args.users,
            "engine_rps_median": round(median_of(engine_runs, "rps")),
            "direct_rps_median": round(median_of(direct_runs, "rps")),
            "ratio_median": round(statistics.median(ratios), 3),
            "target_ratio": 0.5,
            "engine_errors": sum(r["errors"] for r in engine_runs),
            "added_p50_ms_unloaded": round(single_e["p50_ms"] - single_d["p50_ms"], 2),
            "added_p99_ms_unloaded": round(single_e["p99_ms"] - single_d["p99_ms"], 2),
            "target_added_p50_ms": 2,
            "target_added_p99_ms": 10,
            "engine_rss_mb": round(rss, 1),
            "pid": os.getpid(),
        },
    )


if __name__ == "__main__":
    main()
