"""What every repository shares: UTC time, ids, and one transaction (or one read) per method."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.clock import now_utc
from engine.errors import StorageError
from engine.store.db import READ_ONLY

__all__ = ["Repo", "aware", "new_id", "now_utc"]

if TYPE_CHECKING:
    from engine.store.store import Store


def new_id(prefix: str) -> str:
    """``<prefix>_<22 url-safe random characters>`` (128 bits)."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive: they were written as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class Repo:
    """A repository bound to a :class:`Store` (its engine and keyring)."""

    def __init__(self, store: Store) -> None:
        self.s = store

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one or more SELECTs (no write lock on SQLite)."""
        try:
            async with self.s.engine.connect() as conn:
                yield await conn.execution_options(**{READ_ONLY: True})
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
