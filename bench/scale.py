"""bench/scale: a million grants: lookup latency, engine memory and database size, on SQLite or PostgreSQL.

    python bench/scale.py [--grants 1000000] [--postgres] [--lookups 2000]

Lookups are ``grants.find(user, provider)`` (decrypting the tokens), the read every execute makes.
Targets: lookup p50 < 1 ms; engine RSS < 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa

from bench.harness import PY, Proc, free_port, load, report, wait_http
from bench.refresh import create_pg_db, drop_pg_db
from bench.seed import API_KEY, seed, write_config
from engine.config.loader import load_config
from engine.crypto.keys import keyring_from_config
from engine.store.store import Store


async def lookups(cfg: Path, grants: int, count: int) -> tuple[list[float], int]:
    loaded = load_config(cfg)
    store = await Store.open(
        loaded.config.storage.url or "", keyring_from_config(loaded.config, loaded.base_dir)
    )
    times = []
    try:
        for _ in range(count):
            user = f"user{random.randrange(grants):07d}@bench.test"
            started = time.perf_counter()
            grant = await store.grants.find(user, "acme")
            times.append((time.perf_counter() - started) * 1000)
            assert grant is not None
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
    return sorted(times), size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--grants", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kt-bench-") as tmp:
        work = Path(tmp)
        port = free_port()
        dbname = asyncio.run(create_pg_db()) if args.postgres else None
        url = (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}"
            if dbname
            else f"sqlite+aiosqlite:///{work}/kt.db"
        )
        cfg = write_config(work, port=port, storage=url)
        try:
            started = time.monotonic()
            ids = asyncio.run(seed(cfg, args.grants, batch=5000))
            seeded = time.monotonic() - started
            times, size = asyncio.run(lookups(cfg, args.grants, args.lookups))
            engine = Proc([PY, "-m", "engine", "serve", "-c", str(cfg)], cwd=work, log=work / "engine.log")
            try:
                wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
                urls = work / "urls.txt"
                urls.write_text(
                    "".join(
                        f"http://127.0.0.1:{port}/v1/auth/status?id={i}\n"
                        for i in random.sample(ids, min(5000, len(ids)))
                    )
                )
                served = load(
                    [],
                    concurrency=16,
                    duration=5,
                    headers={"Authorization": f"Bearer {API_KEY}"},
                    url_file=urls,
                )
                rss = engine.rss_mb()
            finally:
                engine.stop()
        finally:
            if dbname:
                asyncio.run(drop_pg_db(dbname))
    report(
        "scale_postgres" if args.postgres else "scale_sqlite",
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
            "pid": os.getpid(),
        },
    )


if __name__ == "__main__":
    main()
