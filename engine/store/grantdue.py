"""Which grants a refresh pass takes next (:meth:`engine.store.grants.GrantRepo.due_ids`).

Only ids are read: the pass claims their ``grant:<id>`` leases and then reads the grants under the
leases (one query), so nothing is decrypted twice. A grant on which someone holds a live lease
(another replica refreshing it, or an on-demand refresh) is not returned, so the replicas of one
database take different grants instead of fetching the same batch and losing every lease claim.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, now_utc


async def due_ids(repo: Repo, before: datetime, limit: int, *, exclude: Collection[str] = ()) -> list[str]:
    """``repo`` (the GrantRepo): ids of active grants due by ``before``, soonest first, not leased.

    ``exclude``: ids the caller is already refreshing.
    """
    t, leases = m.grants, m.leases
    leased = sa.exists().where(
        leases.c.name == sa.literal("grant:", sa.String) + t.c.id, leases.c.expires_at > now_utc()
    )
    q = (
        sa.select(t.c.id)
        .where(
            t.c.status == "active",
            t.c.next_refresh_at.is_not(None),
            t.c.next_refresh_at <= before,
            ~leased,
            *((t.c.id.not_in(list(exclude)),) if exclude else ()),
        )
        .order_by(t.c.next_refresh_at)
        .limit(limit)
    )
    async with repo.read() as conn:
        return [str(r.id) for r in (await conn.execute(q)).all()]
