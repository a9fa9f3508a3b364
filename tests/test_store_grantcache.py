"""engine.store.grantcache on SQLite and PostgreSQL: decrypted grants cached, every hit checked by version."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import create_async_engine

from engine.crypto.cipher import Keyring
from engine.store.grantcache import GrantCache
from engine.store.records import GrantRecord
from engine.store.store import Store
from tests.plugins.store import STORE_TOKEN, store_grant


def count_statements(store: Store) -> list[str]:
    """Every statement run through SQLAlchemy on ``store`` (the cache's checks bypass it)."""
    seen: list[str] = []

    def before(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        seen.append(statement)

    event.listen(store.engine.sync_engine, "before_cursor_execute", before)
    return seen


async def test_second_read_is_a_checked_hit(store_opened: Store) -> None:
    """A grant read twice is decrypted once: the second read is a cache hit with no full row read."""
    g = await store_grant(store_opened)
    first = await store_opened.grants.find("u1", "p")
    seen = count_statements(store_opened)
    again = await store_opened.grants.find("u1", "p")
    by_id = await store_opened.grants.get(g.id)
    assert first is not None and again is first and by_id is first
    # the default account's (id, version) is read (choosing a default changes no version); no full row.
    # On SQLite not even that while nothing was committed since the last pick (PRAGMA data_version)
    if store_opened.sqlite:
        assert seen == [] and store_opened.grant_cache.hits == 2
    else:
        [pick] = seen
        assert (
            pick.startswith("SELECT grants.id, grants.version \nFROM grants")
            and store_opened.grant_cache.hits == 2
        )
    seen.clear()
    assert await store_opened.grants.find("u1", "p", "default") is first and seen == []  # a named account


async def test_write_in_process_is_seen_at_once(store_opened: Store) -> None:
    """Revoking, refreshing, failing or deleting through the repository: the next read sees the write."""
    g = await store_grant(store_opened)
    assert (await store_opened.grants.find("u1", "p")) is not None
    await store_opened.grants.set_status(g.id, "revoked")
    revoked = await store_opened.grants.find("u1", "p")
    assert revoked is not None and revoked.status == "revoked"
    await store_opened.grants.set_status(g.id, "active")
    active = await store_opened.grants.get(g.id)
    assert active is not None and active.status == "active"
    await store_opened.grants.record_failure(g.id, error="timeout", next_refresh_at=active.created_at)
    failed = await store_opened.grants.get(g.id)
    assert failed is not None and failed.refresh_failures == 1 and failed.version > active.version
    await store_opened.grants.delete(g.id)
    assert await store_opened.grants.get(g.id) is None and await store_opened.grants.find("u1", "p") is None


async def test_other_engine_revocation_seen_on_next_read(store_url: str, store_keyring: Keyring) -> None:
    """Two engines on one database: a revocation committed by one is seen by the other's very next read."""
    a = await Store.open(store_url, store_keyring)
    b = await Store.open(store_url, store_keyring)
    try:
        g = await store_grant(a)
        for _ in range(3):  # cached in a, hits
            got = await a.grants.find("u1", "p")
            assert got is not None and got.status == "active"
        assert a.grant_cache.hits >= 2
        assert await b.grants.set_status(g.id, "revoked")
        after = await a.grants.find("u1", "p")
        assert after is not None and after.status == "revoked"
        by_id = await a.grants.get(g.id)
        assert by_id is not None and by_id.status == "revoked"
    finally:
        await a.close()
        await b.close()


async def test_other_process_revocation_seen_on_next_read(store_url: str) -> None:
    """Another process revokes the grant and exits: this process's next read is revoked, never the cache."""
    raw_key = os.urandom(32)
    store = await Store.open(store_url, Keyring({"k1": raw_key}, "k1"))
    try:
        g = await store_grant(store)
        for _ in range(3):
            assert (await store.grants.find("u1", "p")) is not None
        key = base64.b64encode(raw_key).decode()
        script = textwrap.dedent(f"""
            import asyncio, base64
            from engine.crypto.cipher import Keyring
            from engine.store.store import Store
            async def main():
                s = await Store.open({store_url!r}, Keyring({{"k1": base64.b64decode({key!r})}}, "k1"))
                assert await s.grants.set_status({g.id!r}, "revoked")
                await s.close()
            asyncio.run(main())
        """)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-500:]
        after = await store.grants.find("u1", "p")
        assert after is not None and after.status == "revoked"
    finally:
        await store.close()


async def test_row_recreated_under_new_id_is_read(store_url: str, store_keyring: Keyring) -> None:
    """Deleted and authorized anew by another engine: the lookup by user finds the new grant, new token."""
    a = await Store.open(store_url, store_keyring)
    b = await Store.open(store_url, store_keyring)
    try:
        g = await store_grant(a)
        assert (await a.grants.find("u1", "p")) is not None
        assert await b.grants.delete(g.id)
        new = await store_grant(b, access_token="at-new")
        found = await a.grants.find("u1", "p")
        assert found is not None and found.id == new.id and found.access_token == "at-new"
        assert await a.grants.get(g.id) is None
    finally:
        await a.close()
        await b.close()


async def test_concurrent_hits_share_one_check(store_opened: Store) -> None:
    """Fifty reads of a named account in one loop turn are checked with one version query; all hit."""
    for i in range(50):
        await store_grant(store_opened, f"u{i}")
    for i in range(50):
        await store_opened.grants.find(f"u{i}", "p")
    await store_grant(store_opened, "someone-else")  # a grant write since: every hit must be checked again
    cache = store_opened.grant_cache
    queries: list[int] = []
    real = cache._query

    async def counted(ids: list[str]) -> dict[str, int]:
        queries.append(len(ids))
        return await real(ids)

    cache._query = counted  # type: ignore[method-assign]
    got = await asyncio.gather(*(store_opened.grants.find(f"u{i}", "p", "default") for i in range(50)))
    assert all(g is not None and g.access_token == STORE_TOKEN for g in got)
    assert queries == [50] and cache.hits == 50


async def test_size_bounds_and_zero_disables(store_url: str, store_keyring: Keyring) -> None:
    """At most grant_cache_size grants are kept (least recently used go); size 0 caches nothing."""
    small = await Store.open(store_url, store_keyring, grant_cache_size=3)
    try:
        for i in range(5):
            await store_grant(small, f"u{i}")
            await small.grants.find(f"u{i}", "p")
        assert len(small.grant_cache) == 3
        assert await small.grants.find("u0", "p") is not None and small.grant_cache.hits == 0
    finally:
        await small.close()
    off = await Store.open(store_url, store_keyring, grant_cache_size=0)
    try:
        await off.grants.find("u1", "p")
        await off.grants.find("u1", "p")
        assert len(off.grant_cache) == 0 and off.grant_cache.hits == 0
    finally:
        await off.close()


async def test_failed_check_falls_back_to_a_full_read(store_opened: Store) -> None:
    """When the check's connection breaks, the read is made the normal way and the cache recovers."""
    g = await store_grant(store_opened)
    await store_opened.grants.get(g.id)
    cache = store_opened.grant_cache
    await cache._driver()
    await cache._driver_conn.close()  # aiosqlite and asyncpg alike
    again = await store_opened.grants.get(g.id)
    assert again is not None and again.access_token == STORE_TOKEN and cache.hits == 0
    third = await store_opened.grants.get(g.id)
    assert third is again and cache.hits == 1


async def test_write_outside_the_repository_bumping_version_is_seen(store_opened: Store) -> None:
    """Any write that bumps the row's version (the repository's rule) invalidates the cached copy."""
    g = await store_grant(store_opened)
    await store_opened.grants.get(g.id)
    async with store_opened.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE grants SET status='revoked', version=version+1 WHERE id=:i"), {"i": g.id}
        )
    after = await store_opened.grants.get(g.id)
    assert after is not None and after.status == "revoked"


async def test_choosing_another_default_account_is_seen_at_once(store_opened: Store) -> None:
    """With the default cached, choosing another account (no version changes) makes find answer it."""
    work = await store_grant(store_opened, account="work")
    home = await store_grant(store_opened, account="home")
    assert (await store_opened.grants.find("u1", "p")).id == work.id
    assert (await store_opened.grants.find("u1", "p", "home")).id == home.id
    async with store_opened.engine.begin() as conn:  # as another process would: not through this repo
        await conn.execute(sa.text("UPDATE grants SET is_default = (id = :h)"), {"h": home.id})
    assert (await store_opened.grants.find("u1", "p")).id == home.id


def sqlite_path(store: Store) -> str:
    path = store.engine.url.database
    assert path
    return path


def counting_version_queries(store: Store) -> list[int]:
    """The number of ids of each version query the cache sends from now on."""
    cache = store.grant_cache
    queries: list[int] = []
    real = cache._query

    async def counted(ids: list[str]) -> dict[str, int]:
        queries.append(len(ids))
        return await real(ids)

    cache._query = counted  # type: ignore[method-assign]
    return queries


async def warmed(store: Store, grant_id: str) -> None:
    """Cache the grant and confirm it once by every path (default pick, by id, named account)."""
    for _ in range(2):
        assert await store.grants.find("u1", "p") is not None
        assert await store.grants.get(grant_id) is not None
        assert await store.grants.find("u1", "p", "default") is not None


async def test_sqlite_hits_skip_the_version_query_while_nothing_is_committed(
    store_url: str, store_keyring: Keyring
) -> None:
    """On SQLite a confirmed entry is handed out with no query until any connection commits again."""
    if not store_url.startswith("sqlite"):
        return  # PostgreSQL has no data_version: every hit is checked by query (tests above)
    store = await Store.open(store_url, store_keyring)
    try:
        g = await store_grant(store)
        await warmed(store, g.id)
        queries = counting_version_queries(store)
        seen = count_statements(store)
        hits = store.grant_cache.hits
        await warmed(store, g.id)
        assert queries == [] and seen == [] and store.grant_cache.hits == hits + 6
        await store_grant(store, "u2")  # a commit (of another grant): the entry is checked again, once
        seen.clear()
        for _ in range(3):
            assert await store.grants.get(g.id) is not None
        assert queries == [1] and seen == []
        await store.grants.find("u1", "p")  # the default is picked again (one query), not the row
        assert len(seen) == 1 and seen[0].startswith("SELECT grants.id, grants.version")
    finally:
        await store.close()


async def test_sqlite_commits_that_write_no_grant_leave_the_cache_unchecked(
    store_url: str, store_keyring: Keyring
) -> None:
    """On SQLite a commit that writes no grant (a lease, from this store or a plain sqlite3 connection)
    leaves confirmed entries served with no query; the next write to any grant sends them back to it."""
    if not store_url.startswith("sqlite"):
        return
    import sqlite3

    store = await Store.open(store_url, store_keyring)
    try:
        g = await store_grant(store)
        await warmed(store, g.id)
        assert store.grant_cache.data_version.counted  # the grant_changes triggers are in place
        queries = counting_version_queries(store)
        seen = count_statements(store)
        assert await store.leases.acquire("bench", "me", 30)  # a commit, no grant written
        other = sqlite3.connect(sqlite_path(store), isolation_level=None)
        try:
            other.execute("INSERT INTO leases (name, owner, expires_at) VALUES ('x', 'y', '2030-01-01')")
            seen.clear()
            await warmed(store, g.id)
            assert queries == [] and seen == []
            other.execute("UPDATE grants SET last_error = 'x' WHERE id = 'gr_none'")  # no row: no bump
            await warmed(store, g.id)
            assert queries == []
            other.execute("UPDATE grants SET status='revoked', version=version+1 WHERE id=?", (g.id,))
            got = await store.grants.get(g.id)
            assert got is not None and got.status == "revoked" and queries == [1]
        finally:
            other.close()
    finally:
        await store.close()


async def test_sqlite_without_the_triggers_any_commit_sends_hits_to_the_query(
    store_url: str, store_keyring: Keyring
) -> None:
    """Triggers dropped while the cache runs (a schema change): the next check queries, and from then
    on any commit (as with data_version alone) does; a grant written meanwhile is seen."""
    if not store_url.startswith("sqlite"):
        return
    import sqlite3

    store = await Store.open(store_url, store_keyring)
    try:
        g = await store_grant(store)
        await warmed(store, g.id)
        other = sqlite3.connect(sqlite_path(store), isolation_level=None)
        try:
            for name in ("grants_changed_insert", "grants_changed_update", "grants_changed_delete"):
                other.execute(f"DROP TRIGGER {name}")
            other.execute("UPDATE grants SET status='revoked', version=version+1 WHERE id=?", (g.id,))
            got = await store.grants.get(g.id)
            assert got is not None and got.status == "revoked"
            assert not store.grant_cache.data_version.counted
            await warmed(store, g.id)
            queries = counting_version_queries(store)
            await warmed(store, g.id)
            assert queries == []  # data_version unchanged: still no query
            assert await store.leases.acquire("bench", "me", 30)  # any commit: checked again
            assert await store.grants.get(g.id) is not None and queries == [1]
        finally:
            other.close()
    finally:
        await store.close()


async def test_sqlite_commit_on_another_connection_is_seen_by_the_very_next_read(
    store_url: str, store_keyring: Keyring
) -> None:
    """A revocation, then a rotation, committed by a plain sqlite3 connection (not this store's): the
    next read by id, by named account and by default account each sees it, never the cached copy."""
    if not store_url.startswith("sqlite"):
        return
    import sqlite3

    store = await Store.open(store_url, store_keyring)
    try:
        g = await store_grant(store)
        await warmed(store, g.id)
        other = sqlite3.connect(sqlite_path(store), isolation_level=None)
        try:
            other.execute("UPDATE grants SET status='revoked', version=version+1 WHERE id=?", (g.id,))
            got = await store.grants.get(g.id)
            assert got is not None and got.status == "revoked"
            await warmed(store, g.id)
            other.execute("UPDATE grants SET status='needs_reauth', version=version+1 WHERE id=?", (g.id,))
            by_default = await store.grants.find("u1", "p")
            assert by_default is not None and by_default.status == "needs_reauth"
            await warmed(store, g.id)
            other.execute("UPDATE grants SET status='revoked', version=version+1 WHERE id=?", (g.id,))
            named = await store.grants.find("u1", "p", "default")
            assert named is not None and named.status == "revoked"
        finally:
            other.close()
    finally:
        await store.close()


async def test_sqlite_other_process_rotation_and_revocation_seen_on_next_read(store_url: str) -> None:
    """Another process rotates the tokens, then revokes (through its own Store), while this one serves
    from the cache without queries: each next read sees the new token, then the revocation."""
    if not store_url.startswith("sqlite"):
        return
    raw_key = os.urandom(32)
    store = await Store.open(store_url, Keyring({"k1": raw_key}, "k1"))
    key = base64.b64encode(raw_key).decode()

    async def in_other_process(action: str) -> None:
        script = textwrap.dedent(f"""
            import asyncio, base64
            from engine.crypto.cipher import Keyring
            from engine.store.store import Store
            async def main():
                s = await Store.open({store_url!r}, Keyring({{"k1": base64.b64decode({key!r})}}, "k1"))
                g = await s.grants.get({g.id!r})
                {action}
                await s.close()
            asyncio.run(main())
        """)
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], capture_output=True)
        assert done.returncode == 0, done.stderr.decode()[-500:]

    try:
        g = await store_grant(store)
        await warmed(store, g.id)
        queries = counting_version_queries(store)
        await warmed(store, g.id)
        assert queries == []  # served on data_version alone
        await in_other_process(
            "assert await s.grants.update_tokens(g.id, expected_version=g.version, access_token='at-2', "
            "refresh_token='rt-2', expires_at=None, scopes=None, id_token=None, next_refresh_at=None)"
        )
        rotated = await store.grants.find("u1", "p")
        assert rotated is not None and rotated.access_token == "at-2"
        await warmed(store, g.id)
        await in_other_process("assert await s.grants.set_status(g.id, 'revoked')")
        by_id = await store.grants.get(g.id)
        assert by_id is not None and by_id.status == "revoked"
    finally:
        await store.close()


async def test_data_version_unavailable_falls_back_to_the_version_query(store_opened: Store) -> None:
    """When data_version cannot be read (PostgreSQL, a failed read), every hit is checked by query."""
    g = await store_grant(store_opened)
    cache = store_opened.grant_cache
    cache.data_version.read = lambda: None  # type: ignore[method-assign]
    await warmed(store_opened, g.id)
    queries = counting_version_queries(store_opened)
    await warmed(store_opened, g.id)
    assert queries == [1, 1, 1, 1]  # get and the named account, twice; the default pick is a query


async def test_concurrent_misses_are_read_in_one_query(store_url: str, store_keyring: Keyring) -> None:
    """Thirty grants not yet cached, asked by id in one loop turn, are read with one query, each right."""
    store = await Store.open(store_url, store_keyring)
    try:
        grants = [await store_grant(store, f"u{i}", access_token=f"at-{i}") for i in range(30)]
        store.grant_cache.clear()
        seen = count_statements(store)
        got = await asyncio.gather(*(store.grants.get(g.id) for g in grants))
        assert [g.access_token if g else None for g in got] == [f"at-{i}" for i in range(30)]
        assert len(seen) == 1 and " IN " in seen[0]
        assert await store.grants.get("gr_none") is None
    finally:
        await store.close()


async def test_a_reap_that_deletes_nothing_keeps_the_cache(store_opened: Store) -> None:
    """delete_revoked_before with nothing to delete leaves cached grants; one that deletes drops them."""
    from datetime import UTC, datetime, timedelta

    g = await store_grant(store_opened)
    await warmed(store_opened, g.id)
    assert await store_opened.grants.delete_revoked_before(datetime.now(UTC) + timedelta(seconds=1)) == 0
    assert len(store_opened.grant_cache) == 1
    await store_opened.grants.set_status(g.id, "revoked")
    await warmed_revoked(store_opened, g.id)
    assert await store_opened.grants.delete_revoked_before(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert len(store_opened.grant_cache) == 0 and await store_opened.grants.get(g.id) is None


async def warmed_revoked(store: Store, grant_id: str) -> None:
    got = await store.grants.get(grant_id)
    assert got is not None and got.status == "revoked"


async def test_cold_default_lookup_is_one_read(store_opened: Store) -> None:
    """A default-account lookup with nothing of that user cached reads the row at once (no separate pick)."""
    await store_grant(store_opened)
    store_opened.grant_cache.clear()  # as after a restart: nothing of u1's cached
    seen = count_statements(store_opened)
    found = await store_opened.grants.find("u1", "p")
    assert found is not None and len(seen) == 1 and seen[0].startswith("SELECT grants.id, grants.user_id")
    seen.clear()
    assert await store_opened.grants.find("u1", "p") is found  # then a hit, as after a pick
    assert store_opened.grant_cache.hits >= 1


def test_holds_follows_eviction_and_drops() -> None:
    """holds() is true exactly while some grant of that user and provider is cached (LRU, drop, clear)."""
    cache = GrantCache(create_async_engine("sqlite+aiosqlite://"), size=1)
    a, b = _record("g1", "u1"), _record("g2", "u2")
    cache.put(a)
    assert cache.holds("u1", "p") and not cache.holds("u2", "p")
    cache.put(b)  # evicts g1
    assert not cache.holds("u1", "p") and cache.holds("u2", "p")
    cache.drop("g2")
    assert not cache.holds("u2", "p")
    cache.put(a)
    cache.clear()
    assert not cache.holds("u1", "p")


def _record(grant_id: str, user_id: str) -> GrantRecord:
    now = datetime.now(UTC)
    return GrantRecord(
        id=grant_id,
        user_id=user_id,
        provider_id="p",
        status="active",
        scopes=(),
        access_token="t",
        refresh_token=None,
        id_token=None,
        user_info=None,
        token_type="Bearer",
        expires_at=None,
        subject=None,
        token_metadata={},
        created_at=now,
        updated_at=now,
        refreshed_at=None,
        next_refresh_at=None,
        refresh_failures=0,
        last_error=None,
        version=1,
    )
