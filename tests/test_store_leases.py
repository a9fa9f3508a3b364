"""engine.store.leases on SQLite and PostgreSQL: one holder at a time, taken over only when expired."""

from __future__ import annotations

import asyncio

from engine.store.store import Store
from tests.plugins.store import database_errors


async def test_concurrent_acquire_one_winner(store_opened: Store) -> None:
    """Many owners racing for a new lease: exactly one gets it, and the database raises nothing."""
    with database_errors(store_opened) as errors:
        results = await asyncio.gather(
            *(store_opened.leases.acquire("grant:1", f"o{i}", 30) for i in range(8))
        )
    assert sum(results) == 1 and errors == []


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


async def test_racing_claims_split_the_names(store_opened: Store) -> None:
    """Owners claiming overlapping name lists at once each get a disjoint share, together all of them."""
    names = [f"grant:{i:04}" for i in range(1200)]  # more than one chunk
    lists = [names[i::2] + names[:300] for i in range(2)] + [list(reversed(names))] * 2
    with database_errors(store_opened) as errors:
        held = await asyncio.gather(
            *(store_opened.leases.claim(ns, f"o{i}", 30) for i, ns in enumerate(lists))
        )
    assert errors == []
    assert sum(len(h) for h in held) == len(names) and set().union(*held) == set(names)
    assert await store_opened.leases.claim(names, "late", 30) == set()


async def test_claim_takes_expired_and_own_leases(store_opened: Store) -> None:
    """A claim takes free, expired and its own leases, not one another owner holds; release_all frees them."""
    assert await store_opened.leases.acquire("a", "dead", 0.01)
    assert await store_opened.leases.acquire("b", "other", 30)
    assert await store_opened.leases.acquire("c", "me", 30)
    await asyncio.sleep(0.05)
    assert await store_opened.leases.claim(["a", "b", "c", "d", "d"], "me", 30) == {"a", "c", "d"}
    await store_opened.leases.renew_all(["a", "b"], "me", 60)
    await store_opened.leases.release_all(["a", "b", "c", "d"], "me")
    assert await store_opened.leases.claim(["a", "b", "c", "d"], "new", 30) == {"a", "c", "d"}
    assert not await store_opened.leases.renew("g", "dead", 30)
