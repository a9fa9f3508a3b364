"""The store: one object holding the database engine, the keyring, and a repository per table."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crypto.cipher import Keyring
from engine.errors import StorageError
from engine.store.base import aware, new_id, now_utc
from engine.store.db import READ_ONLY, create_engine, is_sqlite
from engine.store.records import GrantRecord
from engine.store.repos import ApiKeyRepo, AuditRepo, FlowRepo, GrantRepo, LeaseRepo, MetaRepo
from engine.store.schema import check_schema, ensure_schema
from engine.store.sessions import LoginRepo, SessionRepo


class Store:
    """The database engine, the keyring, and one repository per table (``grants``, ``flows``, ...)."""

    def __init__(self, engine: AsyncEngine, keyring: Keyring, url: str) -> None:
        self.engine = engine
        self.keyring = keyring
        self.url = url
        self.sqlite = is_sqlite(url)
        self.closed = False
        self.grants = GrantRepo(self)
        self.flows = FlowRepo(self)
        self.api_keys = ApiKeyRepo(self)
        self.leases = LeaseRepo(self)
        self.audit = AuditRepo(self)
        self.meta = MetaRepo(self)
        self.sessions = SessionRepo(self)
        self.logins = LoginRepo(self)
        # called once per grant found unreadable (its sealed values do not decrypt): audit, metric
        self.on_unreadable: Callable[[GrantRecord], None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        keyring: Keyring,
        *,
        busy_timeout: float = 5.0,
        pool_size: int = 10,
        migrate: bool = True,
        engine: AsyncEngine | None = None,
    ) -> Store:
        """Connect, create the schema in an empty database, refuse a stale one, check the keys."""
        engine = engine or create_engine(url, busy_timeout=busy_timeout, pool_size=pool_size)
        store = cls(engine, keyring, url)
        try:
            if migrate:
                await ensure_schema(engine)
            else:
                await check_schema(engine)
            await store.check_keys()
        except (OSError, DBAPIError) as exc:
            await engine.dispose()
            raise StorageError(f"cannot open the database: {type(exc).__name__}: {_reason(exc)}") from None
        except BaseException:
            await engine.dispose()
            raise
        return store

    async def close(self) -> None:
        await self.engine.dispose()
        self.closed = True

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(**{READ_ONLY: True})
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, DBAPIError) as exc:
            raise StorageError(f"database unreachable: {type(exc).__name__}") from None

    async def check_keys(self) -> None:
        """Refuse to start on a key id in use that is not configured, or a configured key that is wrong."""
        from engine.store.keycheck import check_keys

        await check_keys(self)

    async def notify_flow(self, flow_id: str) -> None:
        """Tell other replicas (PostgreSQL LISTEN) that a flow changed."""
        if self.sqlite:
            return
        async with self.engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_notify('keyturn_flows', :id)"), {"id": flow_id})

    # helpers for repos
    def seal(self, table: str, column: str, row_id: str, value: str | None) -> bytes | None:
        if value is None:
            return None
        return self.keyring.encrypt_str(value, table=table, column=column, row_id=row_id)

    def open_value(self, table: str, column: str, row_id: str, blob: bytes | None) -> str | None:
        if blob is None:
            return None
        return self.keyring.decrypt_str(bytes(blob), table=table, column=column, row_id=row_id)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return text[:200]


__all__ = ["Store", "aware", "new_id", "now_utc"]
