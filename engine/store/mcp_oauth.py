"""The MCP authorization server's records: clients, codes, tokens, remembered consent (SECURITY.md 35-36).

Codes and tokens are random strings held only by the client; the tables keep their SHA-256. A code
is taken once (an atomic ``used_at`` update): a second exchange finds it used and revokes the
tokens it was exchanged for. A refresh token is taken once in the same way when it is rotated; a
used one presented again revokes its whole family (every token descended from the same code).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, aware, new_id, now_utc

OnReuse = Callable[[str, str], None]  # (family_id, user_id) of a family revoked for a reused secret


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class CodeRecord:
    client_id: str
    user_id: str
    redirect_uri: str
    resource: str
    scope: str
    code_challenge: str
    expires_at: datetime


@dataclasses.dataclass(frozen=True)
class TokenRecord:
    id: str
    kind: str
    family_id: str
    client_id: str
    user_id: str
    resource: str
    scope: str
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None

    def live(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and self.used_at is None and self.expires_at > (now or now_utc())


@dataclasses.dataclass(frozen=True)
class IssuedPair:
    access_token: str
    refresh_token: str | None
    family_id: str


class McpOAuthRepo(Repo):
    # ---- clients (registered by RFC 7591) ------------------------------------------------------
    async def add_client(self, client_id: str, secret: str | None, metadata: dict[str, Any]) -> None:
        async with self.tx() as conn:
            await conn.execute(
                sa.insert(m.mcp_clients).values(
                    client_id=client_id,
                    secret_hash=digest(secret) if secret else None,
                    client_metadata=metadata,
                    created_at=now_utc(),
                )
            )

    async def client(self, client_id: str) -> tuple[str | None, dict[str, Any]] | None:
        """``(secret hash, metadata)`` of a registered client, or None."""
        if len(client_id) > 64:
            return None
        async with self.read() as conn:
            row = (
                await conn.execute(sa.select(m.mcp_clients).where(m.mcp_clients.c.client_id == client_id))
            ).first()
        if row is None:
            return None
        return row.secret_hash, dict(row.client_metadata)

    # ---- codes ----------------------------------------------------------------------------------
    async def save_code(self, code: str, record: CodeRecord) -> None:
        async with self.tx() as conn:
            await conn.execute(
                sa.insert(m.mcp_codes).values(code_hash=digest(code), **dataclasses.asdict(record))
            )

    async def take_code(
        self, code: str, client_id: str, *, on_reuse: OnReuse | None = None
    ) -> CodeRecord | None:
        """The code's record, once: unknown, expired, another client's or used -> None.

        A code presented again after its exchange revokes the tokens it was exchanged for (and tells
        ``on_reuse(family_id, user_id)``).
        """
        if not code or len(code) > 256:
            return None
        t = m.mcp_codes
        key = digest(code)
        now = now_utc()
        async with self.tx() as conn:
            row = (await conn.execute(sa.select(t).where(t.c.code_hash == key))).first()
            if row is None:
                return None
            if row.used_at is not None:
                if row.family_id:
                    await self._revoke_family(conn, row.family_id, now)
                    if on_reuse is not None:
                        on_reuse(row.family_id, row.user_id)
                return None
            taken = await conn.execute(
                sa.update(t).where(t.c.code_hash == key, t.c.used_at.is_(None)).values(used_at=now)
            )
            if taken.rowcount != 1:
                return None
        expires = aware(row.expires_at)
        if row.client_id != client_id or expires is None or expires <= now:
            return None
        return CodeRecord(
            client_id=row.client_id,
            user_id=row.user_id,
            redirect_uri=row.redirect_uri,
            resource=row.resource,
            scope=row.scope,
            code_challenge=row.code_challenge,
            expires_at=expires,
        )

    async def code_exchanged(self, code: str, family_id: str) -> None:
        async with self.tx() as conn:
            await conn.execute(
                sa.update(m.mcp_codes)
                .where(m.mcp_codes.c.code_hash == digest(code))
                .values(family_id=family_id)
            )

    # ---- tokens ---------------------------------------------------------------------------------
    async def issue(
        self,
        *,
        access_token: str,
        refresh_token: str | None,
        family_id: str | None,
        client_id: str,
        user_id: str,
        resource: str,
        scope: str,
        access_ttl: float,
        refresh_ttl: float,
    ) -> str:
        """Store an access token (and a refresh token) of ``family_id`` (a new family when None)."""
        family = family_id or new_id("tf")
        now = now_utc()
        rows = [("access", access_token, access_ttl)]
        if refresh_token:
            rows.append(("refresh", refresh_token, refresh_ttl))
        async with self.tx() as conn:
            for kind, value, ttl in rows:
                await conn.execute(
                    sa.insert(m.mcp_tokens).values(
                        id=new_id("tk"),
                        token_hash=digest(value),
                        kind=kind,
                        family_id=family,
                        client_id=client_id,
                        user_id=user_id,
                        resource=resource,
                        scope=scope,
                        created_at=now,
                        expires_at=now + timedelta(seconds=ttl),
                    )
                )
        return family

    def _token(self, row: Any) -> TokenRecord:
        return TokenRecord(
            id=row.id,
            kind=row.kind,
            family_id=row.family_id,
            client_id=row.client_id,
            user_id=row.user_id,
            resource=row.resource,
            scope=row.scope,
            expires_at=aware(row.expires_at) or now_utc(),
            used_at=aware(row.used_at),
            revoked_at=aware(row.revoked_at),
        )

    async def find(self, token: str, kind: str | None = None) -> TokenRecord | None:
        if not token or len(token) > 256:
            return None
        t = m.mcp_tokens
        q = sa.select(t).where(t.c.token_hash == digest(token))
        if kind is not None:
            q = q.where(t.c.kind == kind)
        async with self.read() as conn:
            row = (await conn.execute(q)).first()
        return self._token(row) if row is not None else None

    async def take_refresh(
        self, token: str, client_id: str, *, on_reuse: OnReuse | None = None
    ) -> TokenRecord | None:
        """A live refresh token of ``client_id``, marked used; a used one revokes its family -> None
        (and tells ``on_reuse(family_id, user_id)``)."""
        found = await self.find(token, "refresh")
        if found is None or found.client_id != client_id:
            return None
        t = m.mcp_tokens
        now = now_utc()
        async with self.tx() as conn:
            if found.used_at is not None or found.revoked_at is not None:
                if found.used_at is not None:  # reuse: someone holds a copy; end the whole family
                    await self._revoke_family(conn, found.family_id, now)
                    if on_reuse is not None:
                        on_reuse(found.family_id, found.user_id)
                return None
            if found.expires_at <= now:
                return None
            taken = await conn.execute(
                sa.update(t).where(t.c.id == found.id, t.c.used_at.is_(None)).values(used_at=now)
            )
            if taken.rowcount != 1:  # a concurrent use of the same token: reuse
                await self._revoke_family(conn, found.family_id, now)
                if on_reuse is not None:
                    on_reuse(found.family_id, found.user_id)
                return None
        return dataclasses.replace(found, used_at=now)

    async def _revoke_family(self, conn: Any, family_id: str, now: datetime) -> None:
        t = m.mcp_tokens
        await conn.execute(
            sa.update(t).where(t.c.family_id == family_id, t.c.revoked_at.is_(None)).values(revoked_at=now)
        )

    async def revoke_family(self, family_id: str) -> None:
        async with self.tx() as conn:
            await self._revoke_family(conn, family_id, now_utc())

    async def revoke(self, token_id: str) -> None:
        t = m.mcp_tokens
        async with self.tx() as conn:
            await conn.execute(sa.update(t).where(t.c.id == token_id).values(revoked_at=now_utc()))

    # ---- consent ----------------------------------------------------------------------------------
    async def consented(self, user_id: str, client_id: str) -> set[str] | None:
        t = m.mcp_consents
        async with self.read() as conn:
            row = (
                await conn.execute(sa.select(t).where(t.c.user_id == user_id, t.c.client_id == client_id))
            ).first()
        return set(row.scope.split()) if row is not None else None

    async def remember_consent(self, user_id: str, client_id: str, scope: str) -> None:
        t = m.mcp_consents
        async with self.tx() as conn:
            await conn.execute(sa.delete(t).where(t.c.user_id == user_id, t.c.client_id == client_id))
            await conn.execute(
                sa.insert(t).values(user_id=user_id, client_id=client_id, scope=scope, created_at=now_utc())
            )

    async def reap(self, now: datetime | None = None) -> int:
        """Delete codes and tokens past their expiry (a day later, so a late replay is still detected)."""
        cutoff = (now or now_utc()) - timedelta(days=1)
        async with self.tx() as conn:
            a = await conn.execute(sa.delete(m.mcp_codes).where(m.mcp_codes.c.expires_at < cutoff))
            b = await conn.execute(sa.delete(m.mcp_tokens).where(m.mcp_tokens.c.expires_at < cutoff))
        return int(a.rowcount or 0) + int(b.rowcount or 0)
