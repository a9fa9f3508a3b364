"""engine.store.db: SQLite in WAL with foreign keys, busy timeout and BEGIN IMMEDIATE; PostgreSQL pools."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.crypto.cipher import Keyring
from engine.store.db import create_engine, is_sqlite
from engine.store.store import Store
from tests.plugins.store import store_grant


async def test_sqlite_pragmas(tmp_path: Path) -> None:
    """Each SQLite connection runs in WAL mode with foreign keys on and the configured busy timeout."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/a.db", busy_timeout=2.5)
    try:
        async with engine.connect() as conn:
            pragma = {
                name: (await conn.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
            raw = await conn.get_raw_connection()
            assert raw.driver_connection is not None
            assert raw.driver_connection.isolation_level is None  # the driver issues no BEGIN of its own
    finally:
        await engine.dispose()
    assert pragma == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 2500}


async def test_write_transaction_takes_lock_at_begin(tmp_path: Path) -> None:
    """engine.begin() on SQLite holds the write lock before any statement; plain reads still run."""
    path = tmp_path / "b.db"
    store = await Store.open(f"sqlite+aiosqlite:///{path}", Keyring({"k": bytes(32)}, "k"))

    def try_write_lock() -> str:
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            return "free"
        except sqlite3.OperationalError as exc:
            return str(exc)
        finally:
            other.close()

    try:
        g = await store_grant(store)
        async with store.engine.begin():
            assert await asyncio.to_thread(try_write_lock) == "database is locked"
            assert (await store.grants.get(g.id)) is not None  # a read is not blocked by the writer
        assert await asyncio.to_thread(try_write_lock) == "free"
    finally:
        await store.close()


async def test_fifty_concurrent_writers_on_sqlite(tmp_path: Path) -> None:
    """50 concurrent writers on SQLite all finish: 'database is locked' never reaches a caller."""
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path}/c.db", Keyring({"k": bytes(32)}, "k"))
    try:

        async def writer(i: int) -> None:
            g = await store_grant(store, f"user{i}")
            await store.grants.update_tokens(
                g.id,
                expected_version=g.version,
                access_token=f"at{i}",
                refresh_token=None,
                expires_at=None,
                scopes=None,
                id_token=None,
                next_refresh_at=None,
            )
            await store.meta.set(f"k{i % 5}", str(i))

        await asyncio.gather(*(writer(i) for i in range(50)))
        assert len(await store.grants.list()) == 50
    finally:
        await store.close()


async def test_engine_kind(store_url: str) -> None:
    """is_sqlite tells the two apart; a PostgreSQL engine gets the configured pool size."""
    engine = create_engine(store_url, pool_size=3)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
        if is_sqlite(store_url):
            assert engine.dialect.name == "sqlite"
        else:
            assert engine.dialect.name == "postgresql" and engine.pool.size() == 3  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite:///relative.db", "postgresql+asyncpg://u@h/db"])
def test_is_sqlite(url: str) -> None:
    """is_sqlite looks at the URL's scheme only."""
    assert is_sqlite(url) == url.startswith("sqlite")


async def test_postgres_read_runs_outside_a_transaction(pg_url: str) -> None:
    """On PostgreSQL a repository read runs each statement in its own transaction (no BEGIN around it)."""
    store = await Store.open(pg_url, Keyring({"k": bytes(32)}, "k"))
    try:
        async with store.grants.read() as conn:
            first = (await conn.execute(sa.text("SELECT pg_current_xact_id()::text"))).scalar()
            second = (await conn.execute(sa.text("SELECT pg_current_xact_id()::text"))).scalar()
        async with store.grants.tx() as conn:
            same = [(await conn.execute(sa.text("SELECT pg_current_xact_id()::text"))).scalar() for _ in "ab"]
    finally:
        await store.close()
    assert first != second
    assert same[0] == same[1]  # a write transaction is still one transaction


async def test_postgres_dead_pooled_connection_is_replaced(pg_url: str) -> None:
    """A pooled PostgreSQL connection killed by the server is replaced when taken: the next read works."""
    import asyncpg

    from tests.plugins.pg import PG_ADMIN

    store = await Store.open(pg_url, Keyring({"k": bytes(32)}, "k"))
    try:
        async with store.grants.read() as conn:
            pid = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            for _ in range(100):  # the backend is gone once the server lists it no more
                if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                    break
                await asyncio.sleep(0.05)
        finally:
            await admin.close()
        async with store.grants.read() as conn:
            again = (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
    finally:
        await store.close()
    assert again != pid
