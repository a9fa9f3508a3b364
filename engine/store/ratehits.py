"""Rate-limit counts every process and replica sees: one expiring row per counted event.

``security.rate_limiting`` (new flows per user and provider, failed API keys per address) used to be
counted in each process, so ``api.processes: N`` (or N replicas) allowed N times the attempts. Each
counted event is now a row in the ``leases`` table named ``rate:<digest of the key>:<random>`` whose
``expires_at`` is the end of its window (no new table, no migration; lease names never start with
``rate:``). Counting and inserting is one transaction: ``BEGIN IMMEDIATE`` on SQLite, a transaction
advisory lock on the key on PostgreSQL, so racing processes never both take the last slot.

:class:`SharedLimiter` keeps, per process, the moment each key it saw refused becomes free again, so
an address over its limit is answered from memory (``retry_after``) without a query per request.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Hashable
from datetime import timedelta

import sqlalchemy as sa

from engine.errors import RateLimited
from engine.store import models as m
from engine.store.base import Repo, aware, now_utc

PREFIX = "rate:"
OWNER = "rate"
_LOCAL_MAX = 100_000


def _prefix(scope: str, key: Hashable) -> str:
    digest = hashlib.sha256(f"{scope}\x00{key!r}".encode()).hexdigest()[:32]
    return f"{PREFIX}{digest}:"


class RateHitRepo(Repo):
    t = m.leases

    async def take(self, prefix: str, limit: int, window: float) -> tuple[str | None, float]:
        """One event under ``prefix`` unless ``limit`` are live: ``(row name, 0)`` or ``(None, wait)``."""
        now = now_utc()
        name = prefix + secrets.token_hex(8)
        live = sa.and_(self.t.c.name >= prefix, self.t.c.name < prefix[:-1] + ";", self.t.c.expires_at > now)
        async with self.tx() as conn:
            if not self.s.sqlite:  # SQLite: BEGIN IMMEDIATE already serializes writers
                await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(prefix))))
            await conn.execute(  # every expired count, of any key
                sa.delete(self.t).where(
                    self.t.c.name >= PREFIX, self.t.c.name < "rate;", self.t.c.expires_at <= now
                )
            )
            count = (await conn.execute(sa.select(sa.func.count()).where(live))).scalar_one()
            if count < limit:
                expires = now + timedelta(seconds=window)
                await conn.execute(sa.insert(self.t).values(name=name, owner=OWNER, expires_at=expires))
                return name, 0.0
            oldest = (await conn.execute(sa.select(sa.func.min(self.t.c.expires_at)).where(live))).scalar()
        oldest = aware(oldest)
        wait = (oldest - now).total_seconds() if oldest is not None else window
        return None, max(0.0, wait)

    async def give_back(self, name: str) -> None:
        async with self.tx() as conn:
            await conn.execute(sa.delete(self.t).where(self.t.c.name == name, self.t.c.owner == OWNER))

    async def clear(self, prefix: str) -> None:
        async with self.tx() as conn:
            await conn.execute(
                sa.delete(self.t).where(self.t.c.name >= prefix, self.t.c.name < prefix[:-1] + ";")
            )


class SharedLimiter:
    """At most ``limit`` events per ``window`` seconds for each key, counted in the database."""

    def __init__(self, repo: Callable[[], RateHitRepo], scope: str, limit: int, window: float) -> None:
        self.repo = repo  # the store's, once it is open
        self.scope = scope
        self.limit = limit
        self.window = window
        self._blocked: dict[Hashable, float] = {}  # key -> monotonic time it may act again (seen here)

    def configure(self, limit: int, window: float) -> None:
        """New limit and window (a reload); counts already taken stay."""
        self.limit = limit
        self.window = window
        self._blocked.clear()

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may act again, as far as this process has seen (no query)."""
        until = self._blocked.get(key)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._blocked[key]
            return 0.0
        return left

    async def hit(self, key: Hashable, *, what: str = "requests") -> str:
        """Count one event (its row name, for :meth:`refund`); :class:`RateLimited` when over the limit."""
        name, wait = await self.repo().take(_prefix(self.scope, key), self.limit, self.window)
        if name is None:
            if len(self._blocked) >= _LOCAL_MAX:
                self._blocked.clear()
            self._blocked[key] = time.monotonic() + wait
            wait = max(1.0, wait)
            raise RateLimited(f"too many {what}; try again in {round(wait)} s", retry_after=wait)
        return name

    async def refund(self, name: str) -> None:
        """Take back one counted event (it turned out not to count)."""
        await self.repo().give_back(name)

    async def reset(self, key: Hashable) -> None:
        self._blocked.pop(key, None)
        await self.repo().clear(_prefix(self.scope, key))
