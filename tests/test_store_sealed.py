"""engine.store.sealed on SQLite and PostgreSQL: key ids in use, samples, guarded rewrites, counts."""

from __future__ import annotations

import os

from engine.crypto.cipher import Keyring
from engine.store.sealed import Rewrite, header
from engine.store.store import Store
from tests.plugins.store import store_flow, store_grant

K1, K2 = os.urandom(32), os.urandom(32)


async def test_key_ids_samples_and_count(store_url: str) -> None:
    """Values sealed with two keys are counted per key id; samples of one key id all carry its header."""
    store = await Store.open(store_url, Keyring({"k1": K1}, "k1"))
    await store_grant(store, "a")
    await store_flow(store)
    await store.close()
    store = await Store.open(store_url, Keyring({"k1": K1, "k2": K2}, "k2"))
    try:
        await store_grant(store, "b")
        found = await store.sealed.key_ids()
        assert {kid: n for kid, (n, _) in found.items()} == {"k1": 5, "k2": 3}
        assert found["k2"][1].startswith("grants.")
        samples = await store.sealed.samples("k1", 1)
        assert {(s.table, s.column) for s in samples} == {
            ("grants", "access_token"),
            ("grants", "refresh_token"),
            ("grants", "user_info"),
            ("flows", "code_verifier"),
            ("flows", "nonce"),
        }
        assert all(s.blob.startswith(header("k1")) for s in samples)
        assert await store.sealed.count(lambda blob: blob.startswith(header("k1"))) == 5
    finally:
        await store.close()


async def test_rewrite_only_where_the_value_is_unchanged(store_url: str) -> None:
    """A rewrite whose old value no longer matches leaves the column alone and is not counted."""
    store = await Store.open(store_url, Keyring({"k1": K1}, "k1"))
    try:
        grant = await store_grant(store, access_token="one")
        (row,) = await store.sealed.batch("grants", "", 10)
        stale = bytes(row.access_token)
        fresh = store.seal("grants", "access_token", grant.id, "two")
        assert fresh is not None
        assert await store.sealed.rewrite("grants", [Rewrite("access_token", grant.id, stale, fresh)]) == 1
        assert await store.sealed.rewrite("grants", [Rewrite("access_token", grant.id, stale, stale)]) == 0
        assert (await store.grants.get(grant.id)).access_token == "two"
        assert await store.sealed.batch("grants", grant.id, 10) == []
    finally:
        await store.close()
