"""bench/execute: POST /v1/tools/execute via Keyturn to an arcade-tdk worker vs calling the worker directly.

    python bench/execute.py [--runs 5] [--duration 5] [--connections 64] [--threads 2] [--users 1000]
                            [--quick]

1,000 distinct users hold grants; each request runs ``Echo.Ping`` (needs the user's authorization,
answers "pong" only when it got a token) for the next user, round robin. The baseline posts the same
ToolCallRequest straight to the worker's /worker/tools/invoke with a worker JWT signed as the engine
signs it (HS256, ``aud: worker``, ``ver: "1"``, ``iat`` now). Every answer of both must be 2xx and carry
"pong", or the run is INVALID (exit 1). Runs alternate engine, direct, then the same with one connection
(the engine-added latency, unloaded). The audit goes to a file sink, as in production.
Targets (issue 19): rps >= 0.6 x direct; engine-added p50 <= 1 ms, p99 <= 5 ms unloaded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joserfc import jwt
from joserfc.jwk import OctKey

from bench import wrk
from bench.harness import (
    PY,
    ROOT,
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

SECRET = "bench-worker-secret-0123456789abcdef"


def direct_token(secret: str, valid_for: float) -> str:
    """A worker JWT as arcade-serve checks it: HS256, aud "worker", ver "1", iat now, exp after the run."""
    now = int(time.time())
    claims = {"aud": "worker", "ver": "1", "iat": now, "exp": now + int(valid_for) + 30}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode({"alg": "HS256", "typ": "JWT"}, claims, OctKey.import_key(secret))


def invoke_body(i: int) -> str:
    return json.dumps(
        {
            "execution_id": f"x{i}",
            "tool": {"name": "Ping", "toolkit": "Echo"},
            "inputs": {},
            "context": {
                "user_id": f"user{i:07d}@bench.test",
                "authorization": {"token": f"at-bench-{i}", "user_info": {}},
            },
        }
    )


def preflight(url: str, body: str, headers: dict[str, str]) -> None:
    """One request before the runs: it must be 200 with the tool's real answer, or say why not."""
    req = urllib.request.Request(url, data=body.encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        print(f"INVALID: {url} answered {exc.code}: {exc.read()[:300]!r}", file=sys.stderr)
        raise SystemExit(1) from exc
    if "pong" not in json.dumps(answer):
        print(f"INVALID: {url} did not run the tool: {answer}", file=sys.stderr)
        raise SystemExit(1)


def main() -> None:
    args = load_parser(__doc__, population="users").parse_args()
    run_on_database(args, measure, population="users")


def measure(args: argparse.Namespace, dbname: str | None) -> None:
    result_name = "execute" + ("_postgres" if dbname else "") + ("_quick" if args.quick else "")
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        port, wport = free_port(), free_port()
        extra = f"workers: [{{id: echo, uri: 'http://127.0.0.1:{wport}', secret: '{SECRET}'}}]"
        cfg = write_config(
            work,
            port=port,
            storage=sa_url(dbname) if dbname else f"sqlite+aiosqlite:///{work}/kt.db",
            extra=extra,
            processes=args.processes,
            event_loop=args.event_loop,
        )
        asyncio.run(seed(cfg, args.users))
        via_engine = [
            (
                "/v1/tools/execute",
                json.dumps({"tool_name": "Echo.Ping", "input": {}, "user_id": f"user{i:07d}@bench.test"}),
            )
            for i in range(args.users)
        ]
        direct = [("/worker/tools/invoke", invoke_body(i)) for i in range(args.users)]
        worker = Proc(
            [PY, str(ROOT / "examples" / "worker" / "echo_worker.py"), str(wport)],
            env={"ARCADE_WORKER_SECRET": SECRET, "ACME_USERINFO_URL": "http://127.0.0.1:1/"},
            log=work / "worker.log",
        )
        engine = Proc(engine_argv(cfg, "execute"), cwd=work, log=work / "engine.log")
        engine_url, worker_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{wport}"
        engine_headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
        runs: dict[str, list[dict[str, float]]] = {"engine": [], "direct": [], "engine_1": [], "direct_1": []}
        try:
            wait_http(f"{engine_url}/ping")
            load_before = load_average()
            wait_http(f"{worker_url}/worker/health")

            def direct_headers() -> dict[str, str]:
                token = direct_token(SECRET, args.duration)  # signed now, for this run
                return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

            preflight(f"{worker_url}/worker/tools/invoke", direct[0][1], direct_headers())
            preflight(f"{engine_url}/v1/tools/execute", via_engine[0][1], engine_headers)
            for _ in range(args.runs):
                for name, conns in (("", args.connections), ("_1", 1)):
                    runs["engine" + name].append(
                        with_cpu(
                            engine,
                            lambda conns=conns: wrk.run(  # type: ignore[misc]
                                engine_url,
                                via_engine,
                                method="POST",
                                headers=engine_headers,
                                connections=conns,
                                threads=args.threads,
                                duration=args.duration,
                                expect="pong",
                            ),
                        )
                    )
                    runs["direct" + name].append(
                        with_cpu(
                            worker,
                            lambda conns=conns: wrk.run(  # type: ignore[misc]
                                worker_url,
                                direct,
                                method="POST",
                                headers=direct_headers(),
                                connections=conns,
                                threads=args.threads,
                                duration=args.duration,
                                expect="pong",
                            ),
                        )
                    )
            rss = engine.rss_mb()
        finally:
            engine.stop()
            worker.stop()
            keep_logs(work, result_name)
        audited = sum(1 for _ in (work / "audit.jsonl").open()) if (work / "audit.jsonl").exists() else 0
    per_run = ratios(runs["engine"], runs["direct"])
    added_p50 = [e["p50_ms"] - d["p50_ms"] for e, d in zip(runs["engine_1"], runs["direct_1"], strict=True)]
    added_p99 = [e["p99_ms"] - d["p99_ms"] for e, d in zip(runs["engine_1"], runs["direct_1"], strict=True)]
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
            "users": args.users,
            "engine_rps_median": round(median_of(runs["engine"], "rps")),
            "direct_rps_median": round(median_of(runs["direct"], "rps")),
            "ratio_median": round(statistics.median(per_run), 3),
            "ratios": [round(r, 3) for r in per_run],
            "target_ratio": 0.6,
            "engine_p50_ms": round(median_of(runs["engine"], "p50_ms"), 2),
            "engine_p99_ms": round(median_of(runs["engine"], "p99_ms"), 2),
            "direct_p50_ms": round(median_of(runs["direct"], "p50_ms"), 2),
            # CPU per request (engine process; the worker process for direct calls): work, not waiting
            "engine_cpu_us_per_request_median": round(median_of(runs["engine"], "cpu_us_per_request")),
            "worker_cpu_us_per_direct_request_median": round(median_of(runs["direct"], "cpu_us_per_request")),
            "engine_cpu_us_per_request_1_connection": round(
                median_of(runs["engine_1"], "cpu_us_per_request")
            ),
            "engine_rps_1_connection": round(median_of(runs["engine_1"], "rps")),
            "direct_rps_1_connection": round(median_of(runs["direct_1"], "rps")),
            "added_p50_ms_unloaded": round(statistics.median(added_p50), 2),
            "added_p99_ms_unloaded": round(statistics.median(added_p99), 2),
            "target_added_p50_ms": 1,
            "target_added_p99_ms": 5,
            "requests_ok": {
                k: int(sum(r["requests"] - r["non2xx"] - r["wrong_body"] for r in v)) for k, v in runs.items()
            },
            "failed_by_load": failed,
            "audit_lines": audited,
            "engine_rss_mb": round(rss, 1),
        },
        sum(failed.values()),
    )


if __name__ == "__main__":
    main()
