"""bench/scale: millions of grants: lookup latency, engine memory and database size, SQLite or PostgreSQL.

    python bench/scale.py [--grants N] [--postgres] [--lookups 2000] [--quick]

Defaults: 1,000,000 grants on SQLite, 10,000,000 with ``--postgres`` (a fresh database, seeded with COPY
with the indexes rebuilt after the load, bench/pgseed.py, dropped at the end; about 5 GB while it runs).

Lookups are ``grants.find(user, provider)`` (decrypting the tokens), the read every execute makes; then
the engine serves ``/v1/auth/status`` on 5,000 of the grants for 5 s (wrk, 16 connections). A lookup that
finds nothing or a status answer that is not 2xx "completed" makes the run INVALID (exit 1).
Targets: lookup p50 < 1 ms; engine RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench import wrk
from bench.harness import PY, Proc, finish, free_port, load_average, wait_http
from bench.pgseed import create_db, drop_db, sa_url
from bench.seed import API_KEY, seed, write_config
from engine.config.keyring import keyring_from_config
from engine.providers.load import load_config
from engine.store.store import Store


async def lookups(cfg: Path, grants: int, count: int) -> tuple[list[float], int, int]:
    loaded = load_config(cfg)
    store = await Store.open(
        loaded.config.storage.url or "", keyring_from_config(loaded.config, loaded.base_dir)
    )
    times = []
    missing = 0
    try:
        for _ in range(count):
            user = f"user{random.randrange(grants):07d}@bench.test"
            started = time.perf_counter()
            grant = await store.grants.find(user, "acme")
            times.append((time.perf_counter() - started) * 1000)
            missing += grant is None
        size = 0
        if store.sqlite:
            path = Path((loaded.config.storage.url or "").split(":///", 1)[1])
            size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
        else:
            async with store.engine.connect() as conn:
                size = int(
                    (await conn.execute(sa.text("SELECT pg_database_size(current_database())"))).scalar() or 0
                )
    finally:
        await store.close()
    return sorted(times), size, missing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, help="default 1,000,000 (SQLite), 10,000,000 (--postgres)")
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a self-check: 10,000 grants, 200 lookups")
    args = parser.parse_args()
    args.grants = args.grants or (10_000_000 if args.postgres else 1_000_000)
    if args.quick:
        args.grants, args.lookups = 10_000, 200
    wrk.require()
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        dbname = asyncio.run(create_db()) if args.postgres else None
        url = sa_url(dbname) if dbname else f"sqlite+aiosqlite:///{work}/kt.db"
        cfg = write_config(work, port=port, storage=url)
        try:
            started = time.monotonic()
            ids = asyncio.run(seed(cfg, args.grants, batch=5000, keep_ids=20_000))
            seeded = time.monotonic() - started
            load = load_average()
            times, size, missing = asyncio.run(lookups(cfg, args.grants, args.lookups))
            engine = Proc([PY, "-m", "engine", "serve", "-c", str(cfg)], cwd=work, log=work / "engine.log")
            try:
                wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
                served = wrk.run(
                    f"http://127.0.0.1:{port}",
                    [(f"/v1/auth/status?id={i}", None) for i in random.sample(ids, min(5000, len(ids)))],
                    connections=16,
                    duration=5,
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    expect="completed",
                )
                rss = engine.rss_mb()
            finally:
                engine.stop()
        finally:
            if dbname:
                asyncio.run(drop_db(dbname))
    finish(
        ("scale_postgres" if args.postgres else "scale_sqlite") + ("_quick" if args.quick else ""),
        {
            "grants": args.grants,
            "seed_seconds": round(seeded, 1),
            "lookup_p50_ms": round(times[len(times) // 2], 3),
            "lookup_p99_ms": round(times[int(len(times) * 0.99)], 3),
            "target_lookup_p50_ms": 1.0,
            "engine_rss_mb_after_5s_of_status": round(rss, 1),
            "target_rss_mb": 150,
            "database_mb": round(size / 1e6, 1),
            "status_rps_while_measuring": round(served["rps"]),
            "lookups_missing": missing,
            "status_failed": int(served["failed"]),
            "load_average_at_lookups": load,
            "load_average_after": load_average(),
        },
        missing + int(served["failed"]),
    )


if __name__ == "__main__":
    main()
