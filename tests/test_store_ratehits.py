"""engine.store.ratehits: rate-limit counts in the database, shared by every process on it."""

from __future__ import annotations

import asyncio

import pytest

from engine.crypto.cipher import Keyring
from engine.errors import RateLimited
from engine.store.ratehits import SharedLimiter
from engine.store.store import Store


async def test_two_stores_share_one_count(
    store_opened: Store, store_url: str, store_keyring: Keyring
) -> None:
    """Racing hits through two stores on one database take exactly the limit; a refund frees a slot."""
    other = await Store.open(store_url, store_keyring)
    try:
        a = SharedLimiter(lambda: store_opened.rate_hits, "t", 5, 60)
        b = SharedLimiter(lambda: other.rate_hits, "t", 5, 60)
        results = await asyncio.gather(*(lim.hit("k") for lim in (a, b) * 5), return_exceptions=True)
        taken = [r for r in results if isinstance(r, str)]
        assert len(taken) == 5 and all(isinstance(r, RateLimited) for r in results if r not in taken)
        assert a.retry_after("k") > 0 or b.retry_after("k") > 0  # a refused process remembers it
        await a.hit("other-key")  # keys are counted apart
        await b.refund(taken[0])
        b.configure(5, 60)  # forget the local block: the database decides
        await b.hit("k")
        with pytest.raises(RateLimited):
            await a.hit("k")
    finally:
        await other.close()


async def test_expired_counts_free_the_key(store_opened: Store) -> None:
    """A count older than its window no longer counts."""
    lim = SharedLimiter(lambda: store_opened.rate_hits, "t", 1, 0.2)
    await lim.hit("k")
    with pytest.raises(RateLimited):
        await lim.hit("k")
    await asyncio.sleep(0.3)
    await lim.hit("k")
