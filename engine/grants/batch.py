"""Group commit for refreshed tokens: the answers that arrive while one transaction runs share the next.

A refresh pass finishes refreshes faster than SQLite commits them one by one (one write transaction
each, serialized on the write lock). :class:`WriteBatch` queues each refresh's
:class:`engine.store.records.TokenUpdate`; one writer task writes everything queued in one
transaction (:meth:`engine.store.grants.GrantRepo.update_tokens_many`), then whatever queued meanwhile,
and so on. Nothing waits on a timer: a lone refresh is written at once; under load the batches grow
by themselves. Each caller gets its own result (the new record, or None when it lost the race).
"""

from __future__ import annotations

import asyncio

from engine.store.records import GrantRecord, TokenUpdate
from engine.store.store import Store

MAX_BATCH = 500  # updates per transaction


class WriteBatch:
    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self.store = store
        self.max_batch = max_batch
        self._queue: list[tuple[TokenUpdate, asyncio.Future[GrantRecord | None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self.transactions = 0

    async def update(self, update: TokenUpdate) -> GrantRecord | None:
        """Write ``update`` with the others queued; its record, or None if the grant changed meanwhile."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[GrantRecord | None] = loop.create_future()
        self._queue.append((update, future))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write())
        # a caller cancelled (shutdown) still has its answer written: the provider may have rotated
        return await asyncio.shield(future)

    async def _write(self) -> None:
        await asyncio.sleep(0)  # the answers of this loop turn join the first batch
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                results = await self.store.grants.update_tokens_many([u for u, _ in batch])
            except Exception as exc:
                for _, f in batch:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.transactions += 1
            for (_, f), result in zip(batch, results, strict=True):
                if not f.done():
                    f.set_result(result)
