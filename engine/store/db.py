"""Database engines: SQLite (aiosqlite; WAL, busy timeout, BEGIN IMMEDIATE) and PostgreSQL (asyncpg).

PostgreSQL: a pooled connection is checked with one ``SELECT 1`` when it is taken from the pool
(:func:`_ping`; a dead one is replaced, as ``pool_pre_ping`` does, whose asyncpg ping costs three
round trips: ``BEGIN``, ``;``, ``ROLLBACK``), and a read (:data:`READ_ONLY`) runs without a
transaction (``AUTOCOMMIT``): at READ COMMITTED each statement takes its own snapshot either way, so
the ``BEGIN`` and ``ROLLBACK`` around it bought nothing but two round trips.

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
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.util import await_

READ_ONLY = "keyturn_read_only"  # execution option: a read that needs no write lock


def read_options(dialect: str) -> dict[str, Any]:
    """Execution options of a connection that only reads (see the module docstring)."""
    if dialect == "postgresql":
        return {READ_ONLY: True, "isolation_level": "AUTOCOMMIT"}
    return {READ_ONLY: True}


def _ping(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
    """A connection leaving the pool answers ``SELECT 1``, or the pool replaces it (SQLAlchemy's
    documented pessimistic check: raising DisconnectionError makes the pool retry with a new one)."""
    try:
        await_(dbapi_conn.driver_connection.fetchval("SELECT 1"))
    except Exception as exc:
        raise DisconnectionError(f"pooled connection is dead: {type(exc).__name__}") from exc


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def create_engine(url: str, *, busy_timeout: float = 5.0, pool_size: int = 10) -> AsyncEngine:
    """An async engine for ``url``; SQLite write transactions start with ``BEGIN IMMEDIATE``."""
    if not is_sqlite(url):
        pg = create_async_engine(url, pool_size=pool_size, max_overflow=pool_size)
        event.listen(pg.sync_engine, "checkout", _ping)
        return pg
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
