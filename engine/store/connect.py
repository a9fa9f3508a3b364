"""Connect links: a short-lived page where one user connects the services an app asks for.

The link carries a random token (256 bits); the table keeps only its SHA-256, the user, the providers
offered (None: every configured one), where to go afterwards, and the expiry. An expired link is kept
for a while (the page says it expired) and then reaped.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, Row, aware, new_id, now_utc
from engine.store.sessions import token_hash


@dataclasses.dataclass(frozen=True)
class ConnectSession:
    id: str  # cs_...: names the link in logs; not its secret token
    user_id: str
    providers: tuple[str, ...] | None
    next_uri: str | None
    created_at: datetime
    expires_at: datetime

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or now_utc())


class ConnectRepo(Repo):
    t = m.connect_sessions

    def _row(self, row: Row) -> ConnectSession:
        return ConnectSession(
            id=row.id,
            user_id=row.user_id,
            providers=tuple(row.providers) if row.providers is not None else None,
            next_uri=row.next_uri,
            created_at=aware(row.created_at) or now_utc(),
            expires_at=aware(row.expires_at) or now_utc(),
        )

    async def create(
        self, user_id: str, *, providers: Sequence[str] | None, next_uri: str | None, ttl: float
    ) -> tuple[str, ConnectSession]:
        """A new link for ``user_id``: ``(token, record)``; the token is stored only hashed."""
        token = secrets.token_urlsafe(32)
        now = now_utc()
        record = ConnectSession(
            id=new_id("cs"),
            user_id=user_id,
            providers=tuple(providers) if providers is not None else None,
            next_uri=next_uri,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
        async with self.tx() as conn:
            await conn.execute(
                sa.insert(self.t).values(
                    id=record.id,
                    token_hash=token_hash(token),
                    user_id=user_id,
                    providers=list(providers) if providers is not None else None,
                    next_uri=next_uri,
                    created_at=now,
                    expires_at=record.expires_at,
                )
            )
        return token, record

    async def lookup(self, token: str) -> ConnectSession | None:
        """The link of ``token`` (expired ones too: the caller says so), or None."""
        if not token or len(token) > 128:
            return None
        async with self.read() as conn:
            row = (
                await conn.execute(sa.select(self.t).where(self.t.c.token_hash == token_hash(token)))
            ).first()
        return self._row(row) if row else None

    async def delete_expired_before(self, ts: datetime) -> int:
        """Retention: links that expired before ``ts``."""
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.expires_at < ts))
        return int(result.rowcount or 0)
