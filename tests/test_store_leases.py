"""engine.store.leases on SQLite and PostgreSQL: one holder at a time, taken over only when expired."""

from __future__ import annotations

import asyncio

from engine.store.store import Store


async def test_concurrent_acquire_one_winner(store_opened: Store) -> None:
    """Many owners racing for a new lease: exactly one gets it."""
    results = await asyncio.gather(*(store_opened.leases.acquire("grant:1", f"o{i}", 30) for i in range(8)))
    assert sum(results) == 1


async def test_held_lease_exclusive_until_released(store_opened: Store) -> None:
    """A held lease refuses others, renews only for its owner, and is free after release."""
    assert await store_opened.leases.acquire("g", "a", 30)
    assert await store_opened.leases.acquire("g", "a", 30)  # the owner may take it again
    assert not await store_opened.leases.acquire("g", "b", 30)
    assert not await store_opened.leases.renew("g", "b", 30)
    assert await store_opened.leases.renew("g", "a", 30)
    await store_opened.leases.release("g", "b")  # not the owner: no effect
    assert not await store_opened.leases.acquire("g", "b", 30)
    await store_opened.leases.release("g", "a")
    assert await store_opened.leases.acquire("g", "b", 30)


async def test_expired_lease_taken_over_by_one(store_opened: Store) -> None:
    """An expired lease is taken over, and by only one of several racing owners."""
    assert await store_opened.leases.acquire("g", "dead", 0.01)
    await asyncio.sleep(0.05)
    results = await asyncio.gather(*(store_opened.leases.acquire("g", f"o{i}", 30) for i in range(6)))
    assert sum(results) == 1
    assert not await store_opened.leases.renew("g", "dead", 30)
