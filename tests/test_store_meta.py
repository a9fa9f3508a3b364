"""engine.store.meta on SQLite and PostgreSQL: settings by key and the installation salt."""

from __future__ import annotations

import asyncio

from engine.store.store import Store


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
    """Concurrent first calls agree on one random salt, which then stays the same."""
    salts = await asyncio.gather(*(store_opened.meta.installation_salt() for _ in range(5)))
    assert len(set(salts)) == 1 and len(salts[0]) == 32
    assert await store_opened.meta.installation_salt() == salts[0]
