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

On SQLite most checks need no query at all. A stamp of what was committed (:class:`DataVersion`),
read on a connection of its own that never writes (the standard library's ``sqlite3``,
synchronously: microseconds, no thread hop; in WAL mode each read starts a read transaction, which
sees every commit made before), is the ``grant_changes`` counter that triggers on ``grants`` bump
on every write to a grant, whoever commits it (migration 0009); without those triggers it is
``PRAGMA data_version``, which changes on any commit by another connection. Each cached entry
remembers the stamp read *before* the query that last confirmed it (its version check, or the
default-account pick): while the stamp read now is the same, no grant was written (or, without the
triggers, nothing was committed) since that query's snapshot, so the entry is still exact. A write
to any grant sends the next check of each entry back to the version query; commits that write no
grant (leases, the audit, rate limits) do not.
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
Stamp = tuple[int, int]  # DataVersion.read: what was committed (see there)
Checked = tuple[int | None, Stamp | None]  # (the row's version or None, the stamp read before the query)


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The database file of a SQLite engine (None: PostgreSQL, in memory, or a URI filename)."""
    url = engine.url
    if engine.dialect.name != "sqlite" or url.query.get("uri"):
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return database


GRANT_TRIGGERS = ("grants_changed_insert", "grants_changed_update", "grants_changed_delete")
# the grants' write counter and the schema's version, in one statement (one read transaction)
_STAMP_SQL = "SELECT (SELECT n FROM grant_changes WHERE id = 1), schema_version FROM pragma_schema_version"
_TRIGGERS_SQL = (
    "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'grants' AND name IN (?, ?, ?)"
)


class DataVersion:
    """What was committed to a SQLite file, as a stamp that changes whenever it matters to the cache,
    read on a connection of its own that never writes.

    With the ``grant_changes`` triggers in place (migration 0009) the stamp is the grants' write
    counter (bumped by every INSERT, UPDATE and DELETE on ``grants``, whoever commits it) with the
    schema's version (a dropped trigger changes it, and is then noticed); commits that write no grant
    (leases, audit, rate limits) leave it alone. Without them, ``PRAGMA data_version``: any commit by
    another connection changes it.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._schema: int | None = None  # the schema version the triggers were last seen in
        self.counted = False  # the stamp is the grants' write counter (else data_version)

    def read(self) -> tuple[int, int] | None:
        """The stamp now (equal to an earlier one only if no grant was written, or, without the
        triggers, nothing was committed, in between), None when unknown."""
        if self.path is None:
            return None
        try:
            conn = self._conn
            if conn is None:  # autocommit; timeout 0: never wait on a lock in the event loop
                conn = self._conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
                conn.execute("PRAGMA query_only=ON")
                self._schema = None
            if self._schema is not None or self._look(conn):
                rows = conn.execute(_STAMP_SQL).fetchall()  # to the end: no open read
                count, schema = rows[0]
                if schema == self._schema and count is not None:
                    return (1, int(count))
                self._schema = None  # the schema changed: look for the triggers again, next read
                return None
            rows = conn.execute("PRAGMA data_version").fetchall()
            return (0, int(rows[0][0]))
        except sqlite3.Error as exc:  # busy, gone: the version query decides instead
            log.debug("grant_cache_data_version_failed", error=type(exc).__name__)
            self.close()
            return None

    def _look(self, conn: sqlite3.Connection) -> bool:
        """Are the three triggers there? Remembers the schema version they were seen in."""
        schema = int(conn.execute("PRAGMA schema_version").fetchall()[0][0])
        found = int(conn.execute(_TRIGGERS_SQL, GRANT_TRIGGERS).fetchall()[0][0])
        self.counted = found == len(GRANT_TRIGGERS)
        self._schema = schema if self.counted else None
        return self.counted

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._schema = None
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
        self._pairs: dict[tuple[str, str], int] = {}  # (user, provider) -> cached grants of theirs
        # grant id -> data_version read before the query that last confirmed the cached version
        self._confirmed: dict[str, Stamp] = {}
        # (user, provider) -> (default grant id, its version, data_version read before that pick)
        self._defaults: collections.OrderedDict[tuple[str, str], tuple[str, int, Stamp]] = (
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

    def holds(self, user_id: str, provider_id: str) -> bool:
        """Whether any grant of the user at the provider is cached (else a default pick cannot hit)."""
        return (user_id, provider_id) in self._pairs

    def default_hit(self, user_id: str, provider_id: str) -> GrantRecord | None:
        """The user's default grant at the provider without any query, when no grant was written since
        the pick that named it (the :class:`DataVersion` stamp unchanged), else None."""
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
        self, user_id: str, provider_id: str, grant_id: str, version: int, seen: Stamp | None
    ) -> None:
        """The default pick read ``(grant_id, version)`` after the stamp was ``seen``."""
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
            if previous is not None and previous != record.id and key in self._keys.get(previous, ()):
                self._keys[previous].discard(key)
                self._forget_pair(key)
            self._by_key[key] = record.id
        self._keys[record.id] = keys
        for key in keys:
            self._pairs[key[:2]] = self._pairs.get(key[:2], 0) + 1
        while len(self._by_id) > self.size:
            evicted, _ = self._by_id.popitem(last=False)
            self._unlink(evicted)

    def _forget_pair(self, key: Key) -> None:
        left = self._pairs.get(key[:2], 0) - 1
        if left > 0:
            self._pairs[key[:2]] = left
        else:
            self._pairs.pop(key[:2], None)

    def _unlink(self, grant_id: str) -> None:
        self._confirmed.pop(grant_id, None)
        for key in self._keys.pop(grant_id, set()):
            self._forget_pair(key)
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
        self._pairs.clear()

    def __len__(self) -> int:
        return len(self._by_id)

    async def aclose(self) -> None:
        self.clear()
        self.data_version.close()
        async with self._lock:
            await self._discard()
