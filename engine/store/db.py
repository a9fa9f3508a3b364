"""Database engines: SQLite (aiosqlite; WAL, busy timeout, BEGIN IMMEDIATE) and PostgreSQL (asyncpg).

SQLite follows SQLAlchemy's documented aiosqlite recipe ("Serializable isolation / Savepoints /
Transactional DDL"): the driver's own implicit, deferred ``BEGIN`` is switched off
(``isolation_level = None`` on each DBAPI connection) and a ``begin`` event emits ``BEGIN IMMEDIATE``,
so a write transaction takes the write lock up front (waiting up to the busy timeout) instead of
failing with "database is locked" when a read inside it later turns into a write.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

READ_ONLY = "keyturn_read_only"  # execution option: a read that needs no write lock


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, busy_timeout: float = 5.0, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url``; SQLite write transactions start with ``BEGIN IMMEDIATE``."""
    if not is_sqlite(url):
        return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
    engine = create_async_engine(
        url,
        connect_args={"timeout": busy_timeout},
        # every write goes through engine.begin(), which commits or rolls back itself; reads run
        # without a transaction: a rollback on each return would only cost a thread round trip
        pool_reset_on_return=None,
        pool_size=pool_size,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # no implicit BEGIN from the driver: we emit our own
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            return  # plain reads run without a transaction: WAL gives each statement a snapshot
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
