"""engine.store.coalesce: reads asked in one loop turn share one query, and none sees an older query."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from engine.store.coalesce import Coalescer


async def test_reads_of_one_turn_share_one_fetch() -> None:
    """Ten keys asked together are fetched once; each caller gets its own value (None when not found)."""
    calls: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        calls.append(sorted(keys))
        return {k: int(k) for k in keys if k != "7"}

    c: Coalescer[int] = Coalescer(fetch)
    got = await asyncio.gather(*(c.get(str(i)) for i in range(10)))
    assert got == [0, 1, 2, 3, 4, 5, 6, None, 8, 9] and len(calls) == 1


async def test_a_read_asked_during_a_fetch_waits_for_the_next_one() -> None:
    """A key asked while a fetch runs is not answered by it: it gets a fetch started after it asked."""
    started = asyncio.Event()
    release = asyncio.Event()
    version = {"k": 1}
    calls: list[list[str]] = []

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        calls.append(list(keys))
        seen = dict(version)  # the query's snapshot, taken when it starts
        started.set()
        await release.wait()
        return {k: seen[k] for k in keys}

    c: Coalescer[int] = Coalescer(fetch)
    first = c.get("k")
    await started.wait()
    version["k"] = 2  # committed after the first query started
    second = c.get("k")
    release.set()
    assert await first == 1 and await second == 2 and len(calls) == 2


async def test_a_failed_fetch_fails_its_batch_only() -> None:
    """A fetch that raises raises to every caller of that batch; the next batch is fetched anew."""
    fail = [True]

    async def fetch(keys: Sequence[str]) -> dict[str, int]:
        if fail.pop() if fail else False:
            raise OSError("gone")
        return {k: 1 for k in keys}

    c: Coalescer[int] = Coalescer(fetch)
    with pytest.raises(OSError):
        await asyncio.gather(c.get("a"), c.get("b"))
    assert await c.get("a") == 1
