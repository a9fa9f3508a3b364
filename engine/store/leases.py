"""Leases: a named lock with an owner and an expiry, held in the database (safe across replicas)."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine.store import models as m
from engine.store.base import Repo, now_utc


class LeaseRepo(Repo):
    t = m.leases

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """Take ``name`` for ``ttl`` seconds unless someone else holds an unexpired lease (atomic)."""
        now = now_utc()
        expires = now + timedelta(seconds=ttl)
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.name == name, sa.or_(self.t.c.expires_at < now, self.t.c.owner == owner))
                .values(owner=owner, expires_at=expires)
            )
            if result.rowcount == 1:
                return True
        try:
            async with self.tx() as conn:
                await conn.execute(sa.insert(self.t).values(name=name, owner=owner, expires_at=expires))
            return True
        except IntegrityError:
            return False

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.name == name, self.t.c.owner == owner)
                .values(expires_at=now_utc() + timedelta(seconds=ttl))
            )
        return result.rowcount == 1

    async def release(self, name: str, owner: str) -> None:
        async with self.tx() as conn:
            await conn.execute(sa.delete(self.t).where(self.t.c.name == name, self.t.c.owner == owner))
