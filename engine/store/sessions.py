"""Signed-in browsers and sign-ins in progress (SECURITY.md 31).

A session is a random id (256 bits) held only by the browser's cookie; the table keeps its SHA-256,
the user, expiry and last use, so a copy of the database signs nobody in. A sign-in in progress keeps
the hash of its ``state`` and, encrypted, the PKCE verifier and nonce; it is taken once.
"""

from __future__ import annotations

import builtins
import dataclasses
import hashlib
import secrets
from datetime import datetime, timedelta

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, aware, new_id, now_utc

# last_used_at is written at most this often per session (a page view is not a database write)
TOUCH_EVERY = timedelta(seconds=60)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class SessionRecord:
    id: str  # se_...: names the session in the CLI and audit; not the cookie's secret
    user_id: str
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime


@dataclasses.dataclass(frozen=True, repr=False)
class LoginRecord:
    id: str
    code_verifier: str | None
    nonce: str | None
    next_path: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"LoginRecord(id={self.id!r}, next_path={self.next_path!r})"


class SessionRepo(Repo):
    t = m.sessions

    def _row(self, row: sa.Row[tuple[object, ...]]) -> SessionRecord:
        r = row._mapping
        return SessionRecord(
            id=r["id"],
            user_id=r["user_id"],
            created_at=aware(r["created_at"]) or now_utc(),
            expires_at=aware(r["expires_at"]) or now_utc(),
            last_used_at=aware(r["last_used_at"]) or now_utc(),
        )

    async def create(self, user_id: str, ttl: float) -> tuple[str, SessionRecord]:
        """A new session for ``user_id``: ``(cookie value, record)``; the value is stored only hashed."""
        token = secrets.token_urlsafe(32)
        now = now_utc()
        record = SessionRecord(
            id=new_id("se"),
            user_id=user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=ttl),
            last_used_at=now,
        )
        async with self.tx() as conn:
            await conn.execute(
                sa.insert(self.t).values(token_hash=token_hash(token), **dataclasses.asdict(record))
            )
        return token, record

    async def lookup(self, token: str) -> SessionRecord | None:
        """The live session a cookie value names (None when unknown, revoked or expired); notes its use."""
        if not token or len(token) > 128:
            return None
        now = now_utc()
        async with self.read() as conn:
            row = (
                await conn.execute(sa.select(self.t).where(self.t.c.token_hash == token_hash(token)))
            ).first()
        if row is None:
            return None
        record = self._row(row)
        if record.expires_at <= now:
            return None
        if now - record.last_used_at >= TOUCH_EVERY:
            async with self.tx() as conn:
                await conn.execute(sa.update(self.t).where(self.t.c.id == record.id).values(last_used_at=now))
            record = dataclasses.replace(record, last_used_at=now)
        return record

    async def delete_token(self, token: str) -> SessionRecord | None:
        """Sign out the session a cookie value names; the record it was, or None."""
        if not token or len(token) > 128:
            return None
        digest = token_hash(token)
        async with self.tx() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.token_hash == digest))).first()
            if row is None:
                return None
            await conn.execute(sa.delete(self.t).where(self.t.c.token_hash == digest))
        return self._row(row)

    async def list(self, *, user_id: str | None = None) -> builtins.list[SessionRecord]:
        q = sa.select(self.t).order_by(self.t.c.created_at, self.t.c.id)
        if user_id is not None:
            q = q.where(self.t.c.user_id == user_id)
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        return [self._row(r) for r in rows]

    async def revoke(
        self, *, user_id: str | None = None, session_id: str | None = None
    ) -> builtins.list[str]:
        """Delete a user's sessions (or one by id); the ids deleted."""
        cond = []
        if user_id is not None:
            cond.append(self.t.c.user_id == user_id)
        if session_id is not None:
            cond.append(self.t.c.id == session_id)
        if not cond:
            raise ValueError("name a user or a session")
        async with self.tx() as conn:
            ids = [r.id for r in await conn.execute(sa.select(self.t.c.id).where(*cond))]
            if ids:
                await conn.execute(sa.delete(self.t).where(self.t.c.id.in_(ids)))
        return ids

    async def delete_expired(self, now: datetime) -> int:
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.expires_at <= now))
        return int(result.rowcount or 0)


class LoginRepo(Repo):
    t = m.logins

    async def create(
        self, *, state: str, code_verifier: str, nonce: str, next_path: str, expires_at: datetime
    ) -> str:
        lid = new_id("li")
        values = {
            "id": lid,
            "state_hash": token_hash(state),
            "code_verifier": self.s.seal("logins", "code_verifier", lid, code_verifier),
            "nonce": self.s.seal("logins", "nonce", lid, nonce),
            "next_path": next_path,
            "created_at": now_utc(),
            "expires_at": expires_at,
        }
        async with self.tx() as conn:
            await conn.execute(sa.insert(self.t).values(**values))
        return lid

    async def consume(self, state: str) -> LoginRecord | None:
        """The sign-in holding ``state``, deleted in the same transaction (single use); None when expired."""
        digest = token_hash(state)
        async with self.tx() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.state_hash == digest))).first()
            if row is None:
                return None
            result = await conn.execute(sa.delete(self.t).where(self.t.c.id == row.id))
            if result.rowcount != 1:
                return None
        expires = aware(row.expires_at)
        if expires is None or expires <= now_utc():
            return None
        return LoginRecord(
            id=row.id,
            code_verifier=self.s.open_value("logins", "code_verifier", row.id, row.code_verifier),
            nonce=self.s.open_value("logins", "nonce", row.id, row.nonce),
            next_path=row.next_path,
            expires_at=expires,
        )

    async def delete_expired(self, now: datetime) -> int:
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.expires_at <= now))
        return int(result.rowcount or 0)
