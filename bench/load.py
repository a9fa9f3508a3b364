"""A load generator in its own process: N concurrent aiohttp clients hitting URLs for D seconds.

    python bench/load.py --url URL [--url URL ...] --concurrency 64 --duration 10 [--header K:V]

Prints one JSON object: requests, errors, rps, and latency percentiles in milliseconds. URLs are
used round-robin (e.g. one per user). It is not the engine's code: only aiohttp's client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import aiohttp


async def run(
    urls: list[str],
    concurrency: int,
    duration: float,
    headers: dict[str, str],
    method: str,
    body: str | None,
    bodies: list[str] | None = None,
) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + duration
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(offset: int) -> None:
            nonlocal errors
            i = offset
            while time.perf_counter() < deadline:
                url = urls[i % len(urls)]
                data = bodies[i % len(bodies)] if bodies else body
                i += concurrency
                started = time.perf_counter()
                try:
                    async with session.request(method, url, data=data) as resp:
                        await resp.read()
                        if resp.status >= 400:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0

    return {
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", action="append", default=[])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--method", default="GET")
    parser.add_argument("--body", default=None)
    parser.add_argument("--url-file", default=None, help="a file with one URL per line (added to --url)")
    parser.add_argument(
        "--body-file", default=None, help="a file with one request body per line, used in turn"
    )
    args = parser.parse_args()
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    urls = list(args.url)
    if args.url_file:
        with open(args.url_file, encoding="utf-8") as fh:
            urls += [line.strip() for line in fh if line.strip()]
    bodies = None
    if args.body_file:
        with open(args.body_file, encoding="utf-8") as fh:
            bodies = [line.strip() for line in fh if line.strip()]
    result = asyncio.run(run(urls, args.concurrency, args.duration, headers, args.method, args.body, bodies))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
