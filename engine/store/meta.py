"""``meta``: small key/value settings of the installation (audit salt, key rotation progress)."""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from engine.errors import NotFound, StorageError
from engine.store import models as m
from engine.store.base import Repo


class MetaRepo(Repo):
    t = m.meta

    async def get(self, key: str) -> str | None:
        async with self.read() as conn:
            return (await conn.execute(sa.select(self.t.c.value).where(self.t.c.key == key))).scalar()

    async def set(self, key: str, value: str) -> None:
        for _attempt in range(3):
            try:
                async with self.tx() as conn:
                    result = await conn.execute(
                        sa.update(self.t).where(self.t.c.key == key).values(value=value)
                    )
                    if result.rowcount == 0:
                        await conn.execute(sa.insert(self.t).values(key=key, value=value))
                return
            except IntegrityError:
                continue  # a concurrent insert of the same key: update it on the next attempt
        raise StorageError(f"could not write meta key {key!r}: concurrent writes kept conflicting")

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
            try:
                async with self.tx() as conn:
                    await conn.execute(
                        sa.insert(self.t).values(key="audit_salt", value=secrets.token_hex(32))
                    )
            except IntegrityError:
                pass
            current = await self.get("audit_salt")
        if current is None:
            raise NotFound("installation salt missing")
        return bytes.fromhex(current)
