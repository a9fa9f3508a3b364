"""The store: the facade holding the database engine, the keyring, and a repository per table.

The repositories are the one way into the database; nothing below this module imports it.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.crypto.cipher import Keyring
from engine.errors import StorageError
from engine.store.api_keys import ApiKeyRepo
from engine.store.approvals import ApprovalRepo
from engine.store.audit import AuditRepo
from engine.store.base import GRANT_CACHE_SIZE, Database, aware, new_id, now_utc
from engine.store.connect import ConnectRepo
from engine.store.db import create_engine, read_options
from engine.store.flows import FlowRepo
from engine.store.grants import GrantRepo
from engine.store.keycheck import check_keys
from engine.store.leases import LeaseRepo
from engine.store.mcp_oauth import McpOAuthRepo
from engine.store.meta import MetaRepo
from engine.store.outbox import OutboxRepo
from engine.store.ratehits import RateHitRepo
from engine.store.schema import check_schema, ensure_schema
from engine.store.sealed import SealedRepo
from engine.store.sessions import LoginRepo, SessionRepo


class Store(Database):
    """The database engine, the keyring, and one repository per table (``grants``, ``flows``, ...)."""

    def __init__(
        self, engine: AsyncEngine, keyring: Keyring, url: str, *, grant_cache_size: int = GRANT_CACHE_SIZE
    ) -> None:
        super().__init__(engine, keyring, url, grant_cache_size=grant_cache_size)
        self.closed = False
        self.grants = GrantRepo(self)
        self.flows = FlowRepo(self)
        self.api_keys = ApiKeyRepo(self)
        self.leases = LeaseRepo(self)
        self.rate_hits = RateHitRepo(self)  # security.rate_limiting counts, shared by all processes
        self.audit = AuditRepo(self)
        self.meta = MetaRepo(self)
        self.sessions = SessionRepo(self)
        self.logins = LoginRepo(self)
        self.outbox = OutboxRepo(self)  # webhook events and their deliveries
        self.connect = ConnectRepo(self)  # connect links
        self.sealed = SealedRepo(self)  # every sealed column at once: key checks, rotation
        self.mcp_oauth = McpOAuthRepo(self)
        self.approvals = ApprovalRepo(self)

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
        grant_cache_size: int = GRANT_CACHE_SIZE,
    ) -> Store:
        """Connect, create the schema in an empty database, refuse a stale one, check the keys."""
        engine = engine or create_engine(url, busy_timeout=busy_timeout, pool_size=pool_size)
        store = cls(engine, keyring, url, grant_cache_size=grant_cache_size)
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
        await self.grant_cache.aclose()
        await self.engine.dispose()
        self.closed = True

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(**read_options(conn.dialect.name))
                await conn.execute(sa.text("SELECT 1"))
        except (OSError, DBAPIError) as exc:
            raise StorageError(f"database unreachable: {type(exc).__name__}") from None

    async def check_keys(self) -> None:
        """Refuse to start on a key id in use that is not configured, or a configured key that is wrong."""
        await check_keys(self.meta, self.sealed, self.keyring)

    async def notify_flow(self, flow_id: str) -> None:
        """Tell other replicas (PostgreSQL LISTEN) that a flow changed."""
        if self.sqlite:
            return
        async with self.engine.begin() as conn:
            await conn.execute(sa.text("SELECT pg_notify('keyturn_flows', :id)"), {"id": flow_id})


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    return text[:200]


__all__ = ["Store", "aware", "new_id", "now_utc"]
