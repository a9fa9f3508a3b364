"""engine.store.rotate: online re-encryption under the default key, resumable, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest

from engine.crypto.cipher import Keyring
from engine.store.rotate import pending, rotate
from engine.store.store import Store

K1, K2 = os.urandom(32), os.urandom(32)


async def fill(store: Store, n: int) -> None:
    for i in range(n):
        await store.grants.upsert(
            f"user{i:03d}",
            "p",
            access_token=f"at-{i}",
            refresh_token=f"rt-{i}",
            id_token=None,
            token_type="Bearer",
            expires_at=None,
            scopes=[],
            subject=None,
            user_info={"i": i},
            token_metadata={},
            next_refresh_at=None,
        )
    await store.flows.create(
        user_id="u",
        provider_id="p",
        scopes=[],
        code_verifier="v" * 50,
        nonce="n",
        redirect_uri="http://x/cb",
        next_uri=None,
        expires_at=datetime.now(UTC) + timedelta(minutes=5),
    )


async def test_rotation_reads_old_and_writes_new(db_url: str) -> None:
    """After adding k2 as default, old rows read; rotation moves every value to k2; k1 can then go."""
    old = await Store.open(db_url, Keyring({"k1": K1}, "k1"))
    await fill(old, 5)
    await old.close()
    both = await Store.open(db_url, Keyring({"k1": K1, "k2": K2}, "k2"))
    assert (await both.grants.find("user001", "p")).access_token == "at-1"
    assert await pending(both) == 5 * 3 + 2
    assert await rotate(both, batch_size=2) == 17
    assert await pending(both) == 0
    await both.close()
    only_new = await Store.open(db_url, Keyring({"k2": K2}, "k2"))
    assert (await only_new.grants.find("user004", "p")).refresh_token == "rt-4"
    await only_new.close()


async def test_interrupted_rotation_resumes(db_url: str) -> None:
    """A rotation stopped after its first batch finishes on the next run; every row stays readable."""
    store = await Store.open(db_url, Keyring({"k1": K1}, "k1"))
    await fill(store, 6)
    await store.close()
    store = await Store.open(db_url, Keyring({"k1": K1, "k2": K2}, "k2"))

    def stop(table: str, done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotate(store, batch_size=2, on_progress=stop)
    assert 0 < await pending(store) < 6 * 3 + 2
    for i in range(6):
        assert (await store.grants.find(f"user{i:03d}", "p")).access_token == f"at-{i}"
    await rotate(store, batch_size=2)
    assert await pending(store) == 0
    await store.close()
