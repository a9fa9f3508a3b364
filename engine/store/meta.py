"""``meta``: small key/value settings of the installation (audit salt, key rotation progress, key checks)."""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from engine.errors import NotFound
from engine.store import models as m
from engine.store.base import Repo


class MetaRepo(Repo):
    t = m.meta

    async def get(self, key: str) -> str | None:
        async with self.read() as conn:
            return (await conn.execute(sa.select(self.t.c.value).where(self.t.c.key == key))).scalar()

    async def set(self, key: str, value: str) -> None:
        """Write ``key`` (insert or overwrite, one statement: racing writers never conflict)."""
        insert = self.s.insert(self.t).values(key=key, value=value)
        async with self.tx() as conn:
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[self.t.c.key], set_={"value": insert.excluded.value}
                )
            )

    async def add(self, key: str, value: str) -> bool:
        """Write ``key`` unless it exists; whether this call wrote it."""
        insert = self.s.insert(self.t).values(key=key, value=value)
        async with self.tx() as conn:
            result = await conn.execute(
                insert.on_conflict_do_nothing(index_elements=[self.t.c.key]).returning(self.t.c.key)
            )
            return result.first() is not None

    async def delete(self, key: str) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.key == key))
        return bool(result.rowcount)

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix``; returns how many went."""
        async with self.tx() as conn:
            result = await conn.execute(
                sa.delete(self.t).where(self.t.c.key.startswith(prefix, autoescape=True))
            )
        return int(result.rowcount or 0)

    async def installation_salt(self) -> bytes:
        """A random salt made once per installation (audit user references)."""
        current = await self.get("audit_salt")
        if current is None:
            await self.add("audit_salt", secrets.token_hex(32))  # a racing first writer wins
            current = await self.get("audit_salt")
        if current is None:
            raise NotFound("installation salt missing")
        return bytes.fromhex(current)
