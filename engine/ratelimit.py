"""A small in-process sliding-window limiter (auth attempts per user+provider, bad API keys per address)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable

from engine.errors import RateLimited


class SlidingWindowLimiter:
    """At most ``limit`` events per ``window`` seconds for each key; memory bounded by ``max_keys``."""

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_keys = max_keys
        self._clock = clock
        self._events: dict[Hashable, deque[float]] = {}

    def configure(self, limit: int, window: float) -> None:
        """New limit and window (a reload); counts already taken stay."""
        self.limit = limit
        self.window = window

    def _trim(self, key: Hashable, now: float) -> deque[float]:
        q = self._events.get(key)
        if q is None:
            if len(self._events) >= self.max_keys:
                self._evict(now)
            q = self._events[key] = deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def _evict(self, now: float) -> None:
        for k in [k for k, q in self._events.items() if not q or q[-1] <= now - self.window]:
            del self._events[k]
        while len(self._events) >= self.max_keys:  # still full: drop the oldest keys
            self._events.pop(next(iter(self._events)))

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may act again (0 when it may now)."""
        now = self._clock()
        q = self._trim(key, now)
        if len(q) < self.limit:
            return 0.0
        return max(0.0, q[0] + self.window - now)

    def hit(self, key: Hashable, *, what: str = "requests") -> None:
        """Count one event, raising :class:`RateLimited` (without counting) when over the limit."""
        now = self._clock()
        q = self._trim(key, now)
        if len(q) >= self.limit:
            wait = max(1.0, q[0] + self.window - now)
            raise RateLimited(f"too many {what}; try again in {round(wait)} s", retry_after=wait)
        q.append(now)

    def refund(self, key: Hashable) -> None:
        """Take back the latest event of ``key`` (it turned out not to count)."""
        q = self._events.get(key)
        if q:
            q.pop()

    def reset(self, key: Hashable) -> None:
        self._events.pop(key, None)
