"""engine.store.grantdue: a refresh pass takes due grants nobody holds a live lease on, by id."""

from __future__ import annotations

from datetime import timedelta

from engine.clock import now_utc
from engine.store.store import Store
from tests.plugins.store import store_grant


async def test_due_ids_skip_grants_leased_by_anyone(store_opened: Store) -> None:
    """A grant under another owner's live lease is left out; an expired lease and exclude work as said."""
    soon = now_utc() - timedelta(seconds=1)
    a, b, c = [await store_grant(store_opened, u, next_refresh_at=soon) for u in ("a", "b", "c")]
    later = now_utc() + timedelta(seconds=5)
    assert set(await store_opened.grants.due_ids(later)) == {a.id, b.id, c.id}
    assert await store_opened.leases.claim([f"grant:{a.id}"], "other-replica", 60) == {f"grant:{a.id}"}
    assert await store_opened.leases.claim([f"grant:{b.id}"], "gone-replica", 0.0) == {f"grant:{b.id}"}
    assert set(await store_opened.grants.due_ids(later)) == {b.id, c.id}  # b's lease has expired
    assert await store_opened.grants.due_ids(later, exclude=[c.id]) == [b.id]
    assert await store_opened.grants.due_ids(later, 1, exclude=[b.id]) == [c.id]
