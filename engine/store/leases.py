"""Leases: a named lock with an owner and an expiry, held in the database (safe across replicas).

A lease is taken with one ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (free, expired, or already
ours), so racing owners never see a unique-key error: the database lets exactly one through. A
scheduler pass claims every due grant it will refresh the same way, in chunks, so a 10,000-grant
pass does not pay one commit per grant. On PostgreSQL a chunk's names travel as one array parameter
(``unnest``): the statement is the same for every chunk, compiled once, instead of a multi-row
``VALUES`` that SQLAlchemy compiles again for each chunk.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, now_utc

CHUNK = 500

# names in array order (sorted by the caller): replicas lock rows in the same order
_TAKE_PG = sa.text(
    "INSERT INTO leases (name, owner, expires_at)"
    " SELECT n, :owner, :expires FROM unnest(CAST(:names AS VARCHAR[])) WITH ORDINALITY AS t(n, i)"
    " ORDER BY i"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
    " WHERE leases.expires_at < :now OR leases.owner = :owner"
    " RETURNING name"
).bindparams(
    sa.bindparam("names", type_=sa.ARRAY(sa.String)),
    sa.bindparam("owner", type_=sa.String),
    sa.bindparam("now", type_=m.UTC_TS),
    sa.bindparam("expires", type_=m.UTC_TS),
)


class LeaseRepo(Repo):
    t = m.leases

    async def acquire(self, name: str, owner: str, ttl: float) -> bool:
        """Take ``name`` for ``ttl`` seconds unless someone else holds an unexpired lease (atomic)."""
        return name in await self.claim([name], owner, ttl)

    async def claim(self, names: Sequence[str], owner: str, ttl: float) -> builtins.set[str]:
        """Take every lease in ``names`` that is free or expired; returns the names now held by ``owner``."""
        now = now_utc()
        expires = now + timedelta(seconds=ttl)
        held: set[str] = set()
        # sorted and unique: one row once per statement, and replicas lock rows in the same order
        ordered = sorted(set(names))
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            async with self.tx() as conn:
                if conn.dialect.name == "postgresql":
                    params = {"names": chunk, "owner": owner, "now": now, "expires": expires}
                    rows = await conn.execute(_TAKE_PG, params)
                else:
                    rows = await conn.execute(self._take(chunk, owner, now, expires))
            held |= {r.name for r in rows}
        return held

    def _take(self, names: list[str], owner: str, now: datetime, expires: datetime) -> sa.Executable:
        insert = self.s.insert(self.t).values(
            [{"name": n, "owner": owner, "expires_at": expires} for n in names]
        )
        return insert.on_conflict_do_update(
            index_elements=[self.t.c.name],
            set_={"owner": insert.excluded.owner, "expires_at": insert.excluded.expires_at},
            where=sa.or_(self.t.c.expires_at < now, self.t.c.owner == owner),
        ).returning(self.t.c.name)

    async def renew(self, name: str, owner: str, ttl: float) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.name == name, self.t.c.owner == owner)
                .values(expires_at=now_utc() + timedelta(seconds=ttl))
            )
        return result.rowcount == 1

    async def renew_all(self, names: Sequence[str], owner: str, ttl: float) -> None:
        """Extend every lease in ``names`` that ``owner`` holds."""
        expires = now_utc() + timedelta(seconds=ttl)
        for chunk in _chunks(names):
            async with self.tx() as conn:
                await conn.execute(
                    sa.update(self.t)
                    .where(self.t.c.name.in_(chunk), self.t.c.owner == owner)
                    .values(expires_at=expires)
                )

    async def release(self, name: str, owner: str) -> None:
        await self.release_all([name], owner)

    async def release_all(self, names: Sequence[str], owner: str) -> None:
        """Let go of every lease in ``names`` that ``owner`` holds."""
        for chunk in _chunks(names):
            async with self.tx() as conn:
                await conn.execute(sa.delete(self.t).where(self.t.c.name.in_(chunk), self.t.c.owner == owner))


def _chunks(names: Sequence[str]) -> list[list[str]]:
    return [list(names[i : i + CHUNK]) for i in range(0, len(names), CHUNK)]
