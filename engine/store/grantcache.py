"""A read-through cache of decrypted grants whose invalidation is exact: a hit is checked against the row.

Every write to a grant goes through :class:`engine.store.grants.GrantRepo` and bumps the row's
``version`` (deleting it removes the row). A cached record is only handed out after the row's
current ``(id, version)`` was read from the database *after* the caller asked, and matched the
cached one: a write committed by this process, another process or another replica before the read
started is always seen (SQLite WAL and PostgreSQL READ COMMITTED give each statement a snapshot
taken when it starts). So a revoked grant is never used after its revocation committed
(SECURITY.md 26), whatever the number of engines on the database, with no time-based expiry.

What a hit saves is the full row read (SQLAlchemy's execution and row processing, the pool
checkout) and the decryption: the check is one indexed ``SELECT id, version`` on a connection this
cache holds, sent straight to the driver, and the checks of every request waiting in the same
event-loop turn share one query (``WHERE id IN (...)``). Within the process a write also drops the
entry at once. Decrypted tokens stay in this process's memory (as they do while a request uses
them); ``storage.grant_cache_size: 0`` turns the cache off.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.store.records import GrantRecord

log = structlog.get_logger("keyturn.store")

Key = tuple[str, str, str]  # (user_id, provider_id, account)


class GrantCache:
    """Decrypted grants by id and by (user, provider, account), LRU-bounded, each hit checked by version.

    Which account is a user's default (``GrantRepo.find`` without an account) is not kept here: the
    person can choose another without any grant's version changing, so that lookup reads the
    default's ``(id, version)`` itself and then asks :meth:`matching`.
    """

    def __init__(self, engine: AsyncEngine, size: int) -> None:
        self.engine = engine
        self.size = max(0, int(size))
        self._by_id: collections.OrderedDict[str, GrantRecord] = collections.OrderedDict()
        self._by_key: dict[Key, str] = {}
        self._keys: dict[str, set[Key]] = {}  # grant id -> the keys that name it
        self._pending: dict[str, builtins.list[asyncio.Future[int | None]]] = {}
        self._flush: asyncio.Task[None] | None = None
        self._conn: AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.size > 0

    # ---- reads -------------------------------------------------------------------------------
    async def by_id(self, grant_id: str) -> GrantRecord | None:
        """The cached grant if the row still has its id and version, else None (read it fully)."""
        record = self._by_id.get(grant_id)
        if record is None:
            self.misses += 1
            return None
        return await self._checked(record)

    def matching(self, grant_id: str, version: int) -> GrantRecord | None:
        """The cached grant if it has this version, read from the row by the caller after it asked."""
        record = self._by_id.get(grant_id)
        if record is None or record.version != version:
            self.misses += 1
            return None
        self._by_id.move_to_end(grant_id)
        self.hits += 1
        return record

    async def by_key(self, user_id: str, provider_id: str, account: str) -> GrantRecord | None:
        grant_id = self._by_key.get((user_id, provider_id, account))
        if grant_id is None:
            self.misses += 1
            return None
        return await self.by_id(grant_id)

    async def _checked(self, record: GrantRecord) -> GrantRecord | None:
        try:
            version = await self._version(record.id)
        except Exception as exc:  # the check failed: read the row the normal way (which reports errors)
            log.debug("grant_cache_check_failed", error=type(exc).__name__)
            self.drop(record.id)
            self.misses += 1
            return None
        if version != record.version or self._by_id.get(record.id) is not record:
            if self._by_id.get(record.id) is record:
                self.drop(record.id)  # written (or deleted) since it was cached
            self.misses += 1
            return None
        self._by_id.move_to_end(record.id)
        self.hits += 1
        return record

    def _version(self, grant_id: str) -> asyncio.Future[int | None]:
        """The row's version now (None: no such row), read together with the other pending checks."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._pending.setdefault(grant_id, []).append(future)
        if self._flush is None or self._flush.done():
            self._flush = loop.create_task(self._read_versions())
        return future

    async def _read_versions(self) -> None:
        await asyncio.sleep(0)  # let the requests of this loop turn join the batch
        while self._pending:
            # a check asked while a query runs waits for the next query: it must see what committed
            # before it asked, which a query already started may not
            batch, self._pending = self._pending, {}
            try:
                found = await self._query(list(batch))
            except Exception as exc:
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc)
                continue
            for grant_id, futures in batch.items():
                for f in futures:
                    if not f.done():
                        f.set_result(found.get(grant_id))

    async def _query(self, ids: builtins.list[str]) -> dict[str, int]:
        async with self._lock:
            try:
                driver = await self._driver()
                if self.engine.dialect.name == "postgresql":
                    rows = await driver.fetch(
                        "SELECT id, version FROM grants WHERE id = ANY($1::text[])", ids
                    )
                else:
                    marks = ",".join("?" * len(ids))
                    sql = f"SELECT id, version FROM grants WHERE id IN ({marks})"  # noqa: S608 - placeholders
                    async with driver.execute(sql, ids) as cursor:
                        rows = await cursor.fetchall()
            except BaseException:
                await self._discard()
                raise
        return {str(r[0]): int(r[1]) for r in rows}

    async def _driver(self) -> Any:
        if self._conn is None:
            conn = await self.engine.connect()
            try:
                raw = await conn.get_raw_connection()
                self._driver_conn = raw.driver_connection
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._driver_conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.invalidate()
            with contextlib.suppress(Exception):
                await conn.close()

    # ---- writes ------------------------------------------------------------------------------
    def put(self, record: GrantRecord) -> None:
        """Remember a grant just read (or written) from the database."""
        if not self.enabled:
            return
        keys = {(record.user_id, record.provider_id, record.account)}
        self._by_id.pop(record.id, None)
        self._unlink(record.id)
        self._by_id[record.id] = record
        for key in keys:
            previous = self._by_key.get(key)
            if previous is not None and previous != record.id:
                self._keys.get(previous, set()).discard(key)
            self._by_key[key] = record.id
        self._keys[record.id] = keys
        while len(self._by_id) > self.size:
            evicted, _ = self._by_id.popitem(last=False)
            self._unlink(evicted)

    def _unlink(self, grant_id: str) -> None:
        for key in self._keys.pop(grant_id, set()):
            if self._by_key.get(key) == grant_id:
                del self._by_key[key]

    def drop(self, grant_id: str) -> None:
        """Forget a grant (it is being written, or it changed)."""
        self._by_id.pop(grant_id, None)
        self._unlink(grant_id)

    def drop_key(self, user_id: str, provider_id: str, account: str) -> None:
        grant_id = self._by_key.get((user_id, provider_id, account))
        if grant_id is not None:
            self.drop(grant_id)

    def clear(self) -> None:
        self._by_id.clear()
        self._by_key.clear()
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._by_id)

    async def aclose(self) -> None:
        self.clear()
        async with self._lock:
            await self._discard()
