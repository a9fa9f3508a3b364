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

On SQLite most checks need no query at all. ``PRAGMA data_version``, read on a connection of its
own that never writes (the standard library's ``sqlite3``, synchronously: microseconds, no thread
hop), changes whenever any other connection, of this process or another, committed to the database
file; in WAL mode each read of it starts a read transaction, which sees every commit made before.
Each cached entry remembers the ``data_version`` read *before* the query that last confirmed it
(its version check, or the default-account pick): while the value read now is the same, nothing was
committed since that query's snapshot, so the entry is still exact. Any commit anywhere (also one
that touches no grant) only sends the next check of each entry back to the version query.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import sqlite3
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from engine.store.records import GrantRecord

log = structlog.get_logger("keyturn.store")

Key = tuple[str, str, str]  # (user_id, provider_id, account)
Checked = tuple[int | None, int | None]  # (the row's version or None, data_version read before the query)


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine (None: PostgreSQL, in memory, or a URI filename)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query.get("uri"):
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return database


class DataVersion:
    """``PRAGMA data_version`` of a SQLite file, on a connection of its own that never writes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    def read(self) -> int | None:
        """The value now (changed whenever another connection committed), None when unknown."""
        if self.path is None:
            return None
        try:
            if self._conn is None:  # autocommit; timeout 0: never wait on a lock in the event loop
                self._conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                self._conn.execute("PRAGMA query_only=ON")
            rows = self._conn.execute("PRAGMA data_version").fetchall()  # to the end: no open read
            return int(rows[0][0])
        except sqlite3.Error as exc:  # busy, gone: the version query decides instead
            log.debug("grant_cache_data_version_failed", error=type(exc).__name__)
            self.close()
            return None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


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
        # grant id -> data_version read before the query that last confirmed the cached version
        self._confirmed: dict[str, int] = {}
        # (user, provider) -> (default grant id, its version, data_version read before that pick)
        self._defaults: collections.OrderedDict[tuple[str, str], tuple[str, int, int]] = (
            collections.OrderedDict()
        )
        self.data_version = DataVersion(sqlite_file(engine))
        self._pending: dict[str, builtins.list[asyncio.Future[Checked]]] = {}
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

    def default_hit(self, user_id: str, provider_id: str) -> GrantRecord | None:
        """The user's default grant at the provider without any query, when nothing was committed to
        the database since the pick that named it (``data_version`` unchanged), else None."""
        entry = self._defaults.get((user_id, provider_id))
        if entry is None:
            return None
        grant_id, version, seen = entry
        if self.data_version.read() != seen:
            del self._defaults[(user_id, provider_id)]
            return None
        record = self._by_id.get(grant_id)
        if record is None or record.version != version:
            return None
        self._by_id.move_to_end(grant_id)
        self.hits += 1
        return record

    def picked_default(
        self, user_id: str, provider_id: str, grant_id: str, version: int, seen: int | None
    ) -> None:
        """The default pick read ``(grant_id, version)`` after ``data_version`` was ``seen``."""
        if seen is None or not self.enabled:
            return
        self._defaults[(user_id, provider_id)] = (grant_id, version, seen)
        self._defaults.move_to_end((user_id, provider_id))
        while len(self._defaults) > self.size:
            self._defaults.popitem(last=False)
        record = self._by_id.get(grant_id)
        if record is not None and record.version == version:
            self._confirmed[grant_id] = seen

    async def _checked(self, record: GrantRecord) -> GrantRecord | None:
        seen = self._confirmed.get(record.id)
        if seen is not None and self.data_version.read() == seen:  # nothing committed since: exact
            self._by_id.move_to_end(record.id)
            self.hits += 1
            return record
        try:
            version, seen = await self._version(record.id)
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
        if seen is not None:
            self._confirmed[record.id] = seen
        self._by_id.move_to_end(record.id)
        self.hits += 1
        return record

    def _version(self, grant_id: str) -> asyncio.Future[Checked]:
        """The row's version now (None: no such row), read together with the other pending checks,
        and the ``data_version`` read just before that query (None on PostgreSQL)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Checked] = loop.create_future()
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
            seen = self.data_version.read()  # before the query: a commit after it changes the value
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
                        f.set_result((found.get(grant_id), seen))

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
        self._confirmed.pop(grant_id, None)
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
        self._defaults.clear()
        self._confirmed.clear()
        self._by_id.clear()
        self._by_key.clear()
        self._keys.clear()

    def __len__(self) -> int:
        return len(self._by_id)

    async def aclose(self) -> None:
        self.clear()
        self.data_version.close()
        async with self._lock:
            await self._discard()
