"""A provider's pace: at most N refreshes in flight per provider, and a pause after its 429.

``lifecycle.refresh_concurrency`` bounds a scheduler pass as a whole; an ``auth.providers[]`` entry's
``refresh_concurrency`` bounds the calls in flight to that one provider (scheduled and on-demand
refreshes alike). A 429 answer stops every call to that provider (not only the grant's) for its
``Retry-After`` (at least ``MIN_PAUSE`` seconds): callers wait for the pause when it ends within
their refresh timeout, else they are told to try again later (the grant stays due, unchanged).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

MIN_PAUSE = 1.0  # seconds: a 429 without Retry-After still pauses its provider this long


class Paused(Exception):
    """The provider is paused for longer than the caller may wait."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"provider paused for {seconds:.1f} s")
        self.seconds = seconds


class ProviderPace:
    def __init__(self) -> None:
        self._slots: dict[str, tuple[int, asyncio.Semaphore]] = {}
        self._paused: dict[str, float] = {}  # provider id -> monotonic end of its pause
        self.in_flight: dict[str, int] = {}

    def _semaphore(self, provider: str, cap: int) -> asyncio.Semaphore:
        entry = self._slots.get(provider)
        if entry is None or entry[0] != cap:  # new, or a reload changed the cap
            entry = self._slots[provider] = (cap, asyncio.Semaphore(cap))
        return entry[1]

    def paused_for(self, provider: str) -> float:
        until = self._paused.get(provider)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            self._paused.pop(provider, None)
            return 0.0
        return left

    def pause(self, provider: str, seconds: float | None) -> None:
        """Stop calls to ``provider`` for ``seconds`` (its Retry-After), never shortening a pause."""
        until = time.monotonic() + max(MIN_PAUSE, seconds or 0.0)
        self._paused[provider] = max(until, self._paused.get(provider, 0.0))

    @contextlib.asynccontextmanager
    async def slot(self, provider: str, cap: int | None, *, max_wait: float) -> AsyncIterator[None]:
        """One call to ``provider``: after its pause (:class:`Paused` past ``max_wait``), within its cap."""
        deadline = time.monotonic() + max_wait
        semaphore = self._semaphore(provider, cap) if cap else None
        if semaphore is not None:
            await semaphore.acquire()
        try:
            while (left := self.paused_for(provider)) > 0:  # re-checked: a 429 may land meanwhile
                if time.monotonic() + left > deadline:
                    raise Paused(left)
                await asyncio.sleep(left)
            self.in_flight[provider] = self.in_flight.get(provider, 0) + 1
            try:
                yield
            finally:
                self.in_flight[provider] -= 1
        finally:
            if semaphore is not None:
                semaphore.release()
