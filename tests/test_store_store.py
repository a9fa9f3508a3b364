"""engine.store.store: open (migrate, check schema and keys), ping, close; clear errors when it cannot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.crypto.cipher import Keyring, UnknownKeyError
from engine.errors import StorageError
from engine.store.store import Store
from tests.plugins.store import store_flow, store_grant


async def test_open_ping_close(store_url: str, store_keyring: Keyring) -> None:
    """open migrates an empty database and gives every repository; ping answers."""
    store = await Store.open(store_url, store_keyring, busy_timeout=1, pool_size=2)
    try:
        await store.ping()
        for name in ("grants", "flows", "api_keys", "leases", "audit", "meta"):
            assert getattr(store, name) is not None
        assert store.sqlite == store_url.startswith("sqlite")
    finally:
        await store.close()


async def test_unknown_key_refused_at_open(store_url: str) -> None:
    """Opening a database holding values sealed by a key that is not configured fails naming the key id."""
    store = await Store.open(store_url, Keyring({"old": os.urandom(32)}, "old"))
    await store_grant(store)
    await store_flow(store)
    await store.close()
    with pytest.raises(UnknownKeyError, match="'old'"):
        await Store.open(store_url, Keyring({"new": os.urandom(32)}, "new"))


async def test_no_migrate_refuses_empty_database(store_url: str, store_keyring: Keyring) -> None:
    """With migrate=False an empty database is refused with the command to run."""
    with pytest.raises(StorageError, match="keyturn db upgrade"):
        await Store.open(store_url, store_keyring, migrate=False)


async def test_unreachable_database(tmp_path: Path, store_keyring: Keyring) -> None:
    """A database that cannot be opened is a StorageError naming the reason, not a traceback."""
    for url in (
        f"sqlite+aiosqlite:///{tmp_path}/missing/dir/x.db",
        "postgresql+asyncpg://postgres@127.0.0.1:1/none",
    ):
        with pytest.raises(StorageError, match="cannot open the database"):
            await Store.open(url, store_keyring)
