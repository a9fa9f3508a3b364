"""bench/refresh: many grants falling due at once against a token endpoint with 50 ms latency.

    python bench/refresh.py [--grants N] [--latency-ms 50] [--runs 1] [--postgres] [--replicas 2] [--quick]

The grants are seeded not due (on PostgreSQL with COPY, bench/pgseed.py), the engines are started and
answer /ping, then one UPDATE makes every grant due: the clock starts there (engine startup is not in the
time). Measures the time until every grant holds a refresh written after it fell due (and, separately,
until the provider had seen one call per grant), the refresh calls the provider saw (must equal the
number of grants, none duplicated), how late grants were refreshed after they fell due (p50, p99), which
replica refreshed how many (its audit file's ``grant.refreshed`` lines), the engines' CPU seconds during
the pass and the load average. SQLite runs one engine (default 10,000 grants); ``--postgres`` runs
``--replicas`` (2) separate ``keyturn serve`` processes on one fresh PostgreSQL database, dropped after
(default 100,000 grants). A run where any grant was left unrefreshed, a duplicate was seen or the
provider refused a call is INVALID (exit 1). The audit goes to a file sink, as in production. Targets
(issue 19): 10,000 at 50 ms in <= 15 s on SQLite with one engine; 100,000 in <= 120 s with two engines
on PostgreSQL; zero duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.harness import (
    PY,
    Proc,
    cpu_of,
    engine_argv,
    finish,
    free_port,
    keep_logs,
    load_average,
    machine_cpu,
    wait_http,
)
from bench.pgseed import create_db, drop_db, sa_url
from bench.seed import seed, write_config
from engine.store import models as m
from engine.store.base import aware
from engine.store.db import create_engine

LIFECYCLE = (
    "lifecycle: {refresh_interval: 1s, refresh_concurrency: 128, refresh_jitter: 0.2s, refresh_timeout: 10s}"
)


def provider_count(port: int) -> dict[str, int]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


async def progress(url: str, due_at: datetime) -> tuple[int, list[float]]:
    """Grants not yet refreshed since ``due_at``, and each refreshed grant's lateness in seconds."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(m.grants.c.refreshed_at))).all()
    finally:
        await engine.dispose()
    lags = []
    left = 0
    for (refreshed,) in rows:
        refreshed = aware(refreshed)
        if refreshed is None or refreshed < due_at:
            left += 1
        else:
            lags.append((refreshed - due_at).total_seconds())
    return left, lags


async def left_count(url: str, due_at: datetime) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            q = sa.select(sa.func.count()).where(
                sa.or_(m.grants.c.refreshed_at.is_(None), m.grants.c.refreshed_at < due_at)
            )
            return int((await conn.execute(q)).scalar() or 0)
    finally:
        await engine.dispose()


async def make_due(url: str) -> datetime:
    """Every grant due now, in one statement (the engines are already running); the time they fell due."""
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            due_at = datetime.now(UTC)
            await conn.execute(sa.update(m.grants).values(next_refresh_at=due_at - timedelta(seconds=1)))
    finally:
        await engine.dispose()
    return due_at


async def db_cpu(dbname: str) -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving ``dbname`` now (the engines' pooled connections)."""
    import asyncpg

    from bench.pgseed import ADMIN

    conn = await asyncpg.connect(ADMIN)
    try:
        pids = [
            r["pid"] for r in await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = $1", dbname)
        ]
    finally:
        await conn.close()
    return {pid: cpu_of(pid) for pid in pids}


def refreshed_by(audit: Path) -> int:
    """``grant.refreshed`` lines in one replica's audit file: how many refreshes that replica made."""
    if not audit.exists():
        return 0
    with audit.open() as f:
        return sum(1 for line in f if '"grant.refreshed"' in line)


def one_run(grants: int, latency_ms: int, postgres: bool, replicas: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        pport = free_port()
        provider = Proc(
            [PY, str(Path(__file__).with_name("fake_provider.py")), str(pport), str(latency_ms)],
            log=work / "provider.log",
        )
        dbname = asyncio.run(create_db()) if postgres else None
        url = sa_url(dbname) if dbname else f"sqlite+aiosqlite:///{work}/kt.db"
        configs = []
        ports = [free_port() for _ in range(replicas)]
        for i, port in enumerate(ports):
            (work / f"r{i}").mkdir()
            configs.append(
                write_config(
                    work / f"r{i}",
                    port=port,
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
            seeding = time.monotonic()
            # seeded not due: the engines start (and migrate) first, then every grant falls due at once
            asyncio.run(seed(configs[0], grants, next_refresh_at=datetime.now(UTC) + timedelta(days=1)))
            seeded = time.monotonic() - seeding
            for i, cfg in enumerate(configs):
                engines.append(
                    Proc(engine_argv(cfg, f"refresh{i}"), cwd=cfg.parent, log=work / f"engine{i}.log")
                )
            for port in ports:
                wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
            time.sleep(1.0)  # the schedulers' first passes (nothing due yet) run now
            load_before = load_average()
            cpu_before = [e.cpu_seconds() for e in engines]
            provider_cpu_before = provider.cpu_seconds()
            machine_before = machine_cpu()
            db_cpu_before = asyncio.run(db_cpu(dbname)) if dbname else {}
            started = time.monotonic()
            due_at = asyncio.run(make_due(url))
            deadline = started + 900
            provider_done = 0.0
            while time.monotonic() < deadline:
                if not provider_done and provider_count(pport)["calls"] >= grants:
                    provider_done = time.monotonic() - started
                if provider_done and asyncio.run(left_count(url, due_at)) == 0:
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            load_after = load_average()
            cpu = [e.cpu_seconds() - b for e, b in zip(engines, cpu_before, strict=True)]
            provider_cpu = provider.cpu_seconds() - provider_cpu_before
            machine_after = machine_cpu()
            busy = machine_after[0] - machine_before[0]
            machine_busy_pct = 100 * busy / max(1e-9, machine_after[1] - machine_before[1])
            db_after = asyncio.run(db_cpu(dbname)) if dbname else {}
            database_cpu = sum(v - db_cpu_before.get(pid, 0.0) for pid, v in db_after.items())
            time.sleep(1.5)  # anything duplicated would arrive now
            counts = provider_count(pport)
            left, lags = asyncio.run(progress(url, due_at))
            rss = max(e.rss_mb() for e in engines)
        finally:
            for e in engines:
                e.stop()
            provider.stop()
            keep_logs(work, "refresh_postgres" if postgres else "refresh_sqlite")
            if dbname:
                asyncio.run(drop_db(dbname))
        per_replica = [refreshed_by(cfg.parent / "audit.jsonl") for cfg in configs]
    lags.sort()
    return {
        "seconds_to_refresh_all": round(elapsed, 2),
        "seconds_provider_calls_done": round(provider_done, 2),
        "seed_seconds": round(seeded, 1),
        "provider_calls": counts["calls"],
        "duplicate_refreshes": counts["duplicates"],
        "provider_refused": counts["errors"],
        "not_refreshed": left,
        "refreshed_per_replica": per_replica,
        "engine_cpu_seconds": [round(c, 1) for c in cpu],
        "engine_cpu_ms_per_refresh": round(sum(cpu) * 1000 / max(1, grants), 3),
        "provider_cpu_seconds": round(provider_cpu, 1),
        "machine_cpu_busy_pct": round(machine_busy_pct, 1),
        "machine_cpu_busy_seconds": round(busy, 1),
        "database_cpu_seconds": round(database_cpu, 1) if dbname else None,
        "lag_p50_s": round(lags[len(lags) // 2], 2) if lags else 0.0,
        "lag_p99_s": round(lags[int(len(lags) * 0.99)], 2) if lags else 0.0,
        "engine_rss_mb": round(rss, 1),
        "replicas": replicas,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grants", type=int, help="default 10,000 (SQLite), 100,000 (--postgres)")
    parser.add_argument("--latency-ms", type=int, default=50)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--replicas", type=int, default=2, help="engines on PostgreSQL (SQLite: always 1)")
    parser.add_argument("--quick", action="store_true", help="a self-check: 200 grants")
    args = parser.parse_args()
    grants = args.grants or (100_000 if args.postgres else 10_000)
    if args.quick:
        grants, args.runs = 200, 1
    replicas = args.replicas if args.postgres else 1
    runs = [one_run(grants, args.latency_ms, args.postgres, replicas) for _ in range(args.runs)]
    name = ("refresh_postgres" if args.postgres else "refresh_sqlite") + ("_quick" if args.quick else "")
    failed = sum(
        int(r["not_refreshed"]) + int(r["provider_refused"]) + int(r["duplicate_refreshes"]) for r in runs
    )
    finish(
        name,
        {
            "grants": grants,
            "provider_latency_ms": args.latency_ms,
            "runs": args.runs,
            "replicas": replicas,
            "seconds_median": statistics.median(r["seconds_to_refresh_all"] for r in runs),
            "lag_p99_s_median": statistics.median(r["lag_p99_s"] for r in runs),
            "target_seconds": 120 if args.postgres else 15,
            "duplicates": sum(int(r["duplicate_refreshes"]) for r in runs),
            "runs_detail": runs,
        },
        failed,
    )


if __name__ == "__main__":
    main()
