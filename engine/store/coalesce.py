"""Reads asked in the same event-loop turn, made as one query (``WHERE id IN (...)``).

A read asked while the batch's query runs waits for the next query: it must see what was committed
before it asked, which a query already started may not. So a coalesced read is as fresh as a read
of its own; it only shares the query (SQLAlchemy's execution, the thread hop) with its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")
Fetch = Callable[[Sequence[str]], Awaitable[dict[str, V]]]


class Coalescer(Generic[V]):
    """``await coalescer.get(key)``: the value ``fetch`` finds for ``key`` (None: none), fetched together
    with every other key asked in the same loop turn."""

    def __init__(self, fetch: Fetch[V]) -> None:
        self.fetch = fetch
        self._pending: dict[str, list[asyncio.Future[V | None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.queries = 0

    def get(self, key: str) -> asyncio.Future[V | None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V | None] = loop.create_future()
        self._pending.setdefault(key, []).append(future)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return future

    async def _run(self) -> None:
        await asyncio.sleep(0)  # let the requests of this loop turn join the batch
        while self._pending:
            batch, self._pending = self._pending, {}
            self.queries += 1
            try:
                found = await self.fetch(list(batch))
            except BaseException as exc:
                for futures in batch.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                if not isinstance(exc, Exception):
                    raise
                continue
            for key, futures in batch.items():
                for f in futures:
                    if not f.done():
                        f.set_result(found.get(key))
