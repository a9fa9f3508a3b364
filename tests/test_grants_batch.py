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
