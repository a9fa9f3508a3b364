"""bench/refresh: 10,000 grants due at once against a token endpoint with 50 ms latency.

    python bench/refresh.py [--grants 10000] [--latency-ms 50] [--runs 1] [--postgres] [--quick]

Measures the time until every grant is refreshed, the refresh calls the provider saw (must equal
the number of grants, none duplicated) and how late grants were refreshed after they fell due.
SQLite runs one engine; ``--postgres`` runs two engines on one PostgreSQL database. A run where any
grant was left unrefreshed or the provider refused a call is INVALID (exit 1). The audit goes to a file
sink, as in production. Targets (issue 19): 10,000 at 50 ms in <= 15 s on SQLite with one engine;
100,000 in <= 120 s with two engines on PostgreSQL; zero duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.harness import PY, Proc, engine_argv, finish, free_port, wait_http
from bench.seed import seed, write_config
from engine.store.db import create_engine

LIFECYCLE = (
    "lifecycle: {refresh_interval: 1s, refresh_concurrency: 128, refresh_jitter: 0.2s, refresh_timeout: 10s}"
)


def provider_count(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def lateness(url: str) -> tuple[int, list[float]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            due = (
                await conn.execute(sa.text("SELECT count(*) FROM grants WHERE refreshed_at IS NULL"))
            ).scalar()
            rows = (await conn.execute(sa.text("SELECT refreshed_at, created_at FROM grants"))).all()
    finally:
        await engine.dispose()
    lags = []
    for refreshed, created in rows:
        if refreshed is not None:
            if isinstance(refreshed, str):
                from datetime import datetime

                refreshed, created = datetime.fromisoformat(refreshed), datetime.fromisoformat(created)
            lags.append((refreshed - created).total_seconds())
    return int(due or 0), lags


async def create_pg_db() -> str:
    import asyncpg

    name = f"kt_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    return name


async def drop_pg_db(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect("postgresql://postgres@127.0.0.1:5432/test")
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.close()


def one_run(grants: int, latency_ms: int, postgres: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        pport = free_port()
        provider = Proc([PY, str(Path(__file__).with_name("fake_provider.py")), str(pport), str(latency_ms)])
        dbname = asyncio.run(create_pg_db()) if postgres else None
        url = (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
            if postgres
            else f"sqlite+aiosqlite:///{work}/kt.db"
        )
        replicas = 2 if postgres else 1
        configs = []
        for i in range(replicas):
            (work / f"r{i}").mkdir()
            configs.append(
                write_config(
                    work / f"r{i}",
                    port=free_port(),
                    storage=url,
                    provider_url=f"http://127.0.0.1:{pport}",
                    extra=LIFECYCLE,
                )
            )
        # every replica must share the root key: copy the first config's key into the others
        first = configs[0].read_text()
        key_line = next(line for line in first.splitlines() if "root_keys" in line)
        for cfg in configs[1:]:
            text = cfg.read_text().splitlines()
            cfg.write_text("\n".join(key_line if "root_keys" in line else line for line in text) + "\n")
        engines: list[Proc] = []
        try:
            wait_http(f"http://127.0.0.1:{pport}/count")
            asyncio.run(seed(configs[0], grants, due=True))
            started = time.monotonic()
            for i, cfg in enumerate(configs):
                engines.append(
                    Proc(
                        engine_argv(cfg, "refresh"),
                        cwd=cfg.parent,
                        log=work / f"engine{i}.log",
                    )
                )
            deadline = started + 600
            while time.monotonic() < deadline:
                if provider_count(pport)["calls"] >= grants:
                    break
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            time.sleep(1.5)  # anything duplicated would arrive now
            counts = provider_count(pport)
            left, lags = asyncio.run(lateness(url))
            settle = time.monotonic() + 10  # the last answers may still be being stored
            while left and time.monotonic() < settle:
                time.sleep(0.5)
                left, lags = asyncio.run(lateness(url))
            rss = max(e.rss_mb() for e in engines)
        finally:
            for e in engines:
                e.stop()
            provider.stop()
            if dbname:
                asyncio.run(drop_pg_db(dbname))
    lags.sort()
    return {
        "seconds_to_refresh_all": round(elapsed, 2),
        "provider_calls": counts["calls"],
        "duplicate_refreshes": counts["duplicates"],
        "provider_refused": counts["errors"],
        "not_refreshed": left,
        "lag_p50_s": round(lags[len(lags) // 2], 2) if lags else 0.0,
        "lag_p99_s": round(lags[int(len(lags) * 0.99)], 2) if lags else 0.0,
        "engine_rss_mb": round(rss, 1),
        "replicas": replicas,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a self-check: 200 grants")
    args = parser.parse_args()
    if args.quick:
        args.grants, args.runs = 200, 1
    runs = [one_run(args.grants, args.latency_ms, args.postgres) for _ in range(args.runs)]
    name = ("refresh_postgres" if args.postgres else "refresh_sqlite") + ("_quick" if args.quick else "")
    failed = sum(int(r["not_refreshed"]) + int(r["provider_refused"]) for r in runs)
    finish(
        name,
        {
            "grants": args.grants,
            "provider_latency_ms": args.latency_ms,
            "runs": args.runs,
            "seconds_median": statistics.median(r["seconds_to_refresh_all"] for r in runs),
            "target_seconds": 120 if args.postgres else 15,
            "duplicates": sum(int(r["duplicate_refreshes"]) for r in runs),
            "runs_detail": runs,
        },
        failed,
    )


if __name__ == "__main__":
    main()
