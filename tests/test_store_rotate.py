"""engine.store.rotate on SQLite and PostgreSQL: online re-encryption under the default key, resumable."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from engine.crypto.cipher import Keyring
from engine.store import models as m
from engine.store.rotate import pending, progress_prefix, rewrites, rotate
from engine.store.store import Store
from tests.plugins.store import store_flow, store_grant

K1, K2 = os.urandom(32), os.urandom(32)
OLD, BOTH, NEW = Keyring({"k1": K1}, "k1"), Keyring({"k1": K1, "k2": K2}, "k2"), Keyring({"k2": K2}, "k2")
VALUES_PER_GRANT = 3  # access, refresh, user_info (no id token)
VALUES_PER_FLOW = 2  # verifier, nonce


async def fill(url: str, grants: int) -> None:
    store = await Store.open(url, OLD)
    for i in range(grants):
        await store_grant(store, f"user{i:03d}", access_token=f"at-{i}", refresh_token=f"rt-{i}")
    await store_flow(store)
    await store.close()


async def test_rotation_reads_old_and_writes_new(store_url: str) -> None:
    """With k2 as default old rows still read; rotation moves every value to k2; k1 can then go."""
    await fill(store_url, 5)
    both = await Store.open(store_url, BOTH)
    g = await both.grants.find("user001", "p")
    assert g is not None and g.access_token == "at-1"
    assert await pending(both) == 5 * VALUES_PER_GRANT + VALUES_PER_FLOW
    assert await rotate(both, batch_size=2) == 5 * VALUES_PER_GRANT + VALUES_PER_FLOW
    assert await pending(both) == 0
    assert await rotate(both) == 0  # nothing left: a second run rewrites nothing
    assert await both.meta.get(progress_prefix(BOTH) + "grants") is None  # a finished run clears progress
    await store_grant(both, "late")
    await both.close()
    only_new = await Store.open(store_url, NEW)
    g = await only_new.grants.find("user004", "p")
    assert g is not None and g.refresh_token == "rt-4"
    await only_new.close()


async def test_interrupted_rotation_resumes(store_url: str) -> None:
    """A rotation stopped after its first batch finishes on the next run; every row stays readable."""
    await fill(store_url, 6)
    store = await Store.open(store_url, BOTH)
    batches: list[int] = []

    def stop(table: str, done: int) -> None:
        batches.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotate(store, BOTH, batch_size=2, on_progress=stop)
    assert batches == [2 * VALUES_PER_GRANT]
    assert await pending(store) == 4 * VALUES_PER_GRANT + VALUES_PER_FLOW
    assert await store.meta.get(progress_prefix(BOTH) + "grants") is not None
    for i in range(6):
        g = await store.grants.find(f"user{i:03d}", "p")
        assert g is not None and g.access_token == f"at-{i}"
    assert await rotate(store, BOTH, batch_size=2) == 4 * VALUES_PER_GRANT + VALUES_PER_FLOW
    assert await pending(store) == 0
    await store.close()


async def test_concurrent_write_not_overwritten(store_url: str) -> None:
    """A token written between rotation's read and its write is kept, not replaced by the old value."""
    await fill(store_url, 1)
    store = await Store.open(store_url, BOTH)
    cols = m.ENCRYPTED["grants"]
    async with store.engine.connect() as conn:
        stale = (await conn.execute(sa.select(m.grants.c.id, *(m.grants.c[c] for c in cols)))).all()
    g = await store.grants.find("user000", "p")
    assert g is not None
    new = await store.grants.update_tokens(
        g.id,
        expected_version=g.version,
        access_token="fresh",
        refresh_token="fresh-rt",
        expires_at=None,
        scopes=None,
        id_token=None,
        next_refresh_at=None,
    )
    assert new is not None
    changes = rewrites(BOTH, "grants", stale)
    assert await store.sealed.rewrite("grants", changes) == 1  # only user_info was still old
    after = await store.grants.get(g.id)
    assert after is not None and (after.access_token, after.refresh_token) == ("fresh", "fresh-rt")
    assert after.version == new.version and after.user_info == {"sub": "s"}
    await store.close()
