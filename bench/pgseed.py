"""PostgreSQL for the benchmarks: a fresh database per run (dropped after), grants seeded with COPY.

``copy_grants`` writes the same rows as :func:`bench.seed.seed` (tokens sealed for their row with the
engine's keyring) through asyncpg's binary COPY (``copy_records_to_table``), in chunks. With
``rebuild_indexes`` the table's indexes and unique constraints are dropped first and rebuilt after the
load (a sort each instead of one random B-tree insert per row and index: what makes 10,000,000 rows
take minutes, not an hour); the rebuilt definitions are read from the catalog, so they are the schema's.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from engine.config.keyring import Keyring
from engine.store.store import Store, new_id

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
COLUMNS = (
    "id",
    "user_id",
    "provider_id",
    "account",
    "is_default",
    "status",
    "scopes",
    "access_token",
    "refresh_token",
    "token_type",
    "expires_at",
    "token_metadata",
    "created_at",
    "updated_at",
    "next_refresh_at",
    "refresh_failures",
    "version",
)


async def create_db() -> str:
    name = f"kt_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return name


async def drop_db(name: str) -> None:
    conn = await asyncpg.connect(ADMIN)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def sa_url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def plain_url(url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy ``postgresql+asyncpg://`` URL."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _rows(
    keyring: Keyring,
    start: int,
    stop: int,
    *,
    expires: datetime,
    next_refresh: datetime | None,
    now: datetime,
) -> Iterator[tuple[Any, ...]]:
    scopes = json.dumps(["read"])
    for i in range(start, stop):
        gid = new_id("gr")
        yield (
            gid,
            f"user{i:07d}@bench.test",
            "acme",
            "default",
            True,
            "active",
            scopes,
            keyring.encrypt_str(
                f"at-{secrets.token_hex(16)}", table="grants", column="access_token", row_id=gid
            ),
            keyring.encrypt_str(f"rt-{i}", table="grants", column="refresh_token", row_id=gid),
            "Bearer",
            expires,
            "{}",
            now,
            now,
            next_refresh,
            0,
            1,
        )


async def copy_grants(
    url: str,
    keyring: Keyring,
    count: int,
    *,
    due: bool = False,
    next_refresh_at: datetime | None = None,
    chunk: int = 50_000,
    rebuild_indexes: bool = False,
    keep_ids: int | None = None,
    progress: bool = False,
) -> list[str]:
    """COPY ``count`` active grants into ``url``'s database (schema created first); their ids.

    ``due``: all due now; else ``next_refresh_at`` (None: never). ``keep_ids``: return only about that
    many ids, spread over the table (a 10,000,000-row run need not hold every id in memory).
    """
    store = await Store.open(url, keyring)  # the engine's own schema, migrations included
    await store.close()
    now = datetime.now(UTC)
    expires = now + (timedelta(seconds=30) if due else timedelta(hours=1))
    when = now - timedelta(seconds=1) if due else next_refresh_at
    every = max(1, count // keep_ids) if keep_ids else 1
    ids: list[str] = []
    conn = await asyncpg.connect(plain_url(url))
    try:
        restore: list[str] = []
        if rebuild_indexes:
            restore = await _drop_indexes(conn)
        for start in range(0, count, chunk):
            rows = list(
                _rows(keyring, start, min(count, start + chunk), expires=expires, next_refresh=when, now=now)
            )
            ids.extend(r[0] for r in rows[::every])
            await conn.copy_records_to_table("grants", records=rows, columns=COLUMNS)
            if progress and (start // chunk) % 20 == 0:
                print(f"seeded {start + len(rows):,} of {count:,}", flush=True)
        for statement in restore:
            await conn.execute(statement)
        await conn.execute("ANALYZE grants")
    finally:
        await conn.close()
    return ids


async def _drop_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the grants table's indexes and unique/primary constraints; the statements that restore them."""
    constraints = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = 'grants'::regclass AND contype IN ('p', 'u')"
    )
    names = {c["conname"] for c in constraints}
    indexes = [
        r
        for r in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'grants'")
        if r["indexname"] not in names
    ]
    restore = [f'ALTER TABLE grants ADD CONSTRAINT "{c["conname"]}" {c["def"]}' for c in constraints]
    restore += [r["indexdef"] for r in indexes]
    for r in indexes:
        await conn.execute(f'DROP INDEX "{r["indexname"]}"')
    for c in constraints:
        await conn.execute(f'ALTER TABLE grants DROP CONSTRAINT "{c["conname"]}"')
    return restore
