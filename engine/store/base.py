"""What every repository shares: the database, UTC time, ids, one transaction (or one read) per method.

The store's modules import in one direction: ``db``/``models``/``records`` ← ``base`` ← the repositories
(``grants``, ``flows``, ``sealed`` ...) ← ``keycheck`` ← ``store`` (the facade) ← ``rotate``. No
repository imports the facade: each holds a :class:`Database`.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.clock import now_utc
from engine.crypto.cipher import Keyring
from engine.errors import StorageError
from engine.store.db import is_sqlite, read_options
from engine.store.grantcache import GrantCache
from engine.store.records import GrantRecord

GRANT_CACHE_SIZE = 10_000  # decrypted grants kept (storage.grant_cache_size)

__all__ = ["Database", "Repo", "Row", "aware", "new_id", "now_utc"]

Row = sa.Row[Any]
Upsert = postgresql.Insert | sqlite.Insert


def new_id(prefix: str) -> str:
    """``<prefix>_<22 url-safe random characters>`` (128 bits)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive: they were written as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Database:
    """The database engine and the keyring the repositories share (the base of the ``Store`` facade)."""

    def __init__(
        self, engine: AsyncEngine, keyring: Keyring, url: str, *, grant_cache_size: int = GRANT_CACHE_SIZE
    ) -> None:
        self.engine = engine
        self.keyring = keyring
        self.url = url
        self.sqlite = is_sqlite(url)
        self.grant_cache = GrantCache(engine, grant_cache_size)  # exact: each hit checked by version
        # called once per grant found unreadable (its sealed values do not decrypt): audit, metric
        self.on_unreadable: Callable[[GrantRecord], None] | None = None
        # called after a transaction that wrote a webhook event commits: wakes this process's deliverer
        self.on_outbox: Callable[[], None] | None = None

    def outbox_written(self) -> None:
        """A webhook event was committed (engine.store.outbox): tell the deliverer, if one listens."""
        hook = self.on_outbox
        if hook is not None:
            hook()

    def insert(self, table: sa.Table) -> Upsert:
        """An INSERT of this database's dialect: one with ``on_conflict_do_update``/``_do_nothing``."""
        if self.engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def seal(self, table: str, column: str, row_id: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        return self.keyring.encrypt_str(value, table=table, column=column, row_id=row_id)

    def open_value(self, table: str, column: str, row_id: str, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        return self.keyring.decrypt_str(bytes(blob), table=table, column=column, row_id=row_id)


class Repo:
    """A repository bound to a :class:`Database` (its engine and keyring)."""

    def __init__(self, db: Database) -> None:
        self.s = db

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one or more SELECTs (no write lock on SQLite)."""
        try:
            async with self.s.engine.connect() as conn:
                yield await conn.execution_options(**read_options(conn.dialect.name))
        except (DBAPIError, OSError) as exc:
            raise StorageError(
                f"database error: {type(getattr(exc, 'orig', exc)).__name__}", retry_after=1
            ) from None

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; database faults become a 503 StorageError with the reason's class."""
        try:
            async with self.s.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except (DBAPIError, OSError) as exc:
            raise StorageError(
                f"database error: {type(getattr(exc, 'orig', exc)).__name__}", retry_after=1
            ) from None
