"""engine.grants.batch: refreshes finishing together are written in one transaction, each with its result."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from engine.grants.batch import WriteBatch
from engine.store.records import TokenUpdate
from engine.store.store import Store
from tests.plugins.store import store_grant


def update(grant_id: str, version: int, token: str, *, refresh: str | None = None) -> TokenUpdate:
    soon = datetime.now(UTC) + timedelta(hours=1)
    return TokenUpdate(
        grant_id=grant_id,
        expected_version=version,
        access_token=token,
        refresh_token=refresh,
        expires_at=soon,
        scopes=None,
        id_token=None,
        next_refresh_at=soon - timedelta(minutes=5),
    )


async def test_concurrent_updates_share_one_transaction(store_opened: Store) -> None:
    """Forty updates queued in the same loop turn: one transaction, every grant holds its new token."""
    grants = [await store_grant(store_opened, f"u{i}") for i in range(40)]
    batch = WriteBatch(store_opened)
    rotate = {g.id: f"rt-new-{i}" for i, g in enumerate(grants) if i % 2}  # two column sets
    results = await asyncio.gather(
        *(
            batch.update(update(g.id, g.version, f"at-{i}", refresh=rotate.get(g.id)))
            for i, g in enumerate(grants)
        )
    )
    assert batch.transactions == 1
    for i, (g, r) in enumerate(zip(grants, results, strict=True)):
        assert r is not None and r.access_token == f"at-{i}" and r.version == g.version + 1
        assert r.refresh_token == rotate.get(g.id, g.refresh_token) and r.refreshed_at is not None
        stored = await store_opened.grants.get(g.id)
        assert stored is not None and stored.access_token == f"at-{i}"


async def test_a_changed_grant_loses_only_its_own_write(store_opened: Store) -> None:
    """A grant written or revoked since it was read gets None; the others in the batch are written."""
    a, b, c = [await store_grant(store_opened, u) for u in ("a", "b", "c")]
    await store_opened.grants.set_status(b.id, "revoked")
    await store_opened.grants.update_tokens_many([update(c.id, c.version, "at-other")])
    results = await store_opened.grants.update_tokens_many(
        [update(a.id, a.version, "at-a"), update(b.id, b.version, "at-b"), update(c.id, c.version, "at-c")]
    )
    assert results[0] is not None and results[0].access_token == "at-a"
    assert results[1] is None and results[2] is None
    kept = await store_opened.grants.get(c.id)
    assert kept is not None and kept.access_token == "at-other"
    revoked = await store_opened.grants.get(b.id)
    assert revoked is not None and revoked.status == "revoked" and revoked.access_token != "at-b"
