"""The load generator for the benchmarks: wrk (C, epoll), driven by bench/requests.lua.

A Python client tops out near a few thousand requests per second on this machine, which capped the
baselines; wrk does not. Every answer is checked (status 2xx, and the body containing an expected
text when one is given); socket errors and timeouts count as failures too. A run with any failure is
invalid: see :func:`failures` and ``bench.harness.finish``.

Install wrk from the distribution: ``apt-get install -y wrk`` (Debian/Ubuntu), ``brew install wrk``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

LUA = Path(__file__).resolve().with_name("requests.lua")
INSTALL_HINT = "wrk is required: apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)"


def require() -> str:
    """The path of wrk; without it, say how to install it and exit non-zero."""
    path = shutil.which("wrk")
    if path is None:
        print(INSTALL_HINT, file=sys.stderr)
        raise SystemExit(2)
    return path


def failures(result: dict[str, float]) -> int:
    """How many requests of a run failed: non-2xx answers, wrong bodies, socket errors, timeouts."""
    return int(
        result["non2xx"]
        + result["wrong_body"]
        + result["connect"]
        + result["read"]
        + result["write"]
        + result["timeout"]
    )


def run(
    url: str,
    requests: Sequence[tuple[str, str | None]],
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    connections: int = 64,
    threads: int = 2,
    duration: float = 5.0,
    expect: str | None = None,
    timeout: float = 10.0,
) -> dict[str, float]:
    """Send ``requests`` ((path with query, body or None), round robin) to ``url``'s host for ``duration``.

    Returns requests, rps, failed (see :func:`failures`) and its parts, latency p50/p90/p99/mean in
    milliseconds, and ``sample``: the first failing answer's status and body start (for the log).
    """
    wrk = require()
    threads = max(1, min(threads, connections))
    base = urlsplit(url)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="kt-wrk-", delete=False) as fh:
        for path, body in requests:
            if "\t" in path or "\n" in path or (body is not None and ("\n" in body or "\t" in body)):
                raise ValueError("a request path or body holds a tab or a newline")
            fh.write(f"{path}\t{body}\n" if body is not None else f"{path}\n")
        listing = fh.name
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout:g}s",
        "-s",
        str(LUA),
    ]
    for k, v in (headers or {}).items():
        argv += ["-H", f"{k}: {v}"]
    argv += [f"{base.scheme}://{base.netloc}/", "--", listing, method, str(threads), expect or ""]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    finally:
        Path(listing).unlink(missing_ok=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRK-JSON ")), None)
    if proc.returncode != 0 or line is None:
        said = proc.stderr.strip() or proc.stdout.strip()
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {said}")
    raw = json.loads(line.removeprefix("WRK-JSON "))
    # wrk's own count of answers >= 400, as a cross-check of the script's count
    listed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", proc.stdout)
    if listed:
        raw["non2xx"] = max(int(raw["non2xx"]), int(listed.group(1)))
    seconds = raw["duration_us"] / 1e6
    result: dict[str, float] = {
        "requests": raw["requests"],
        "rps": raw["requests"] / seconds if seconds else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "mean_ms": raw["mean_us"] / 1000,
        **{k: raw[k] for k in ("non2xx", "wrong_body", "connect", "read", "write", "timeout")},
    }
    result["failed"] = failures(result)
    if result["failed"]:
        print(f"wrk {url}: {result['failed']} failed; first: {raw['sample']!r}", file=sys.stderr)
    return result
