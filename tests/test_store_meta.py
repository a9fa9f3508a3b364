"""engine.store.meta on SQLite and PostgreSQL: settings by key and the installation salt."""

from __future__ import annotations

import asyncio

from engine.store.store import Store
from tests.plugins.store import database_errors


async def test_get_set_delete(store_opened: Store) -> None:
    """set inserts then overwrites; delete_prefix removes only matching keys."""
    assert await store_opened.meta.get("a:1") is None
    await store_opened.meta.set("a:1", "x")
    await store_opened.meta.set("a:1", "y")
    await store_opened.meta.set("a_2", "z")
    assert await store_opened.meta.get("a:1") == "y"
    assert await store_opened.meta.delete_prefix("a:") == 1
    assert await store_opened.meta.get("a:1") is None and await store_opened.meta.get("a_2") == "z"


async def test_installation_salt_created_once(store_opened: Store) -> None:
    """Concurrent first calls agree on one random salt, which then stays the same; no key error."""
    with database_errors(store_opened) as errors:
        salts = await asyncio.gather(*(store_opened.meta.installation_salt() for _ in range(8)))
    assert len(set(salts)) == 1 and len(salts[0]) == 32 and errors == []
    assert await store_opened.meta.installation_salt() == salts[0]


async def test_racing_sets_of_a_new_key(store_opened: Store) -> None:
    """Writers racing to set a key that does not exist yet all succeed, the database raising nothing."""
    with database_errors(store_opened) as errors:
        await asyncio.gather(*(store_opened.meta.set("race", f"v{i}") for i in range(8)))
    assert errors == [] and await store_opened.meta.get("race") in {f"v{i}" for i in range(8)}


async def test_add_writes_only_the_first(store_opened: Store) -> None:
    """add writes a missing key and says so; on an existing key it changes nothing; delete removes it."""
    results = await asyncio.gather(*(store_opened.meta.add("once", f"v{i}") for i in range(8)))
    assert results.count(True) == 1
    assert await store_opened.meta.get("once") == f"v{results.index(True)}"
    assert await store_opened.meta.delete("once") and not await store_opened.meta.delete("once")
