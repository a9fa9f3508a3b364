"""Leases in bulk: a scheduler pass claims every due grant it will refresh in one transaction.

Same table and semantics as ``LeaseRepo`` (a lease is held by one owner until it expires or is
released); claiming many at once keeps a 10,000-grant pass from paying one commit per grant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine.store import models as m

if TYPE_CHECKING:
    from engine.store.store import Store

CHUNK = 500


async def claim(store: Store, names: Sequence[str], owner: str, ttl: float) -> set[str]:
    """Take every lease in ``names`` that is free or expired; returns the names now held by ``owner``."""
    t = m.leases
    now = datetime.now(UTC)
    expires = now + timedelta(seconds=ttl)
    held: set[str] = set()
    for start in range(0, len(names), CHUNK):
        chunk = list(names[start : start + CHUNK])
        for _attempt in range(3):
            try:
                async with store.engine.begin() as conn:
                    await conn.execute(
                        sa.update(t)
                        .where(t.c.name.in_(chunk), sa.or_(t.c.expires_at < now, t.c.owner == owner))
                        .values(owner=owner, expires_at=expires)
                    )
                    existing = {
                        r.name for r in await conn.execute(sa.select(t.c.name).where(t.c.name.in_(chunk)))
                    }
                    missing = [n for n in chunk if n not in existing]
                    if missing:
                        await conn.execute(
                            sa.insert(t),
                            [{"name": n, "owner": owner, "expires_at": expires} for n in missing],
                        )
                    rows = await conn.execute(
                        sa.select(t.c.name).where(
                            t.c.name.in_(chunk), t.c.owner == owner, t.c.expires_at == expires
                        )
                    )
                    held |= {r.name for r in rows}
                break
            except IntegrityError:
                continue  # another replica inserted one of them meanwhile: look again
    return held


async def renew(store: Store, names: Sequence[str], owner: str, ttl: float) -> None:
    t = m.leases
    expires = datetime.now(UTC) + timedelta(seconds=ttl)
    for start in range(0, len(names), CHUNK):
        chunk = list(names[start : start + CHUNK])
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.update(t).where(t.c.name.in_(chunk), t.c.owner == owner).values(expires_at=expires)
            )


async def release(store: Store, names: Sequence[str], owner: str) -> None:
    t = m.leases
    for start in range(0, len(names), CHUNK):
        chunk = list(names[start : start + CHUNK])
        async with store.engine.begin() as conn:
            await conn.execute(sa.delete(t).where(t.c.name.in_(chunk), t.c.owner == owner))
