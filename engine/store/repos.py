"""Repositories: one transaction per method; secrets sealed on the way in, opened on the way out."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.errors import Conflict, NotFound, StorageError
from engine.store import models as m
from engine.store.db import READ_ONLY
from engine.store.records import ApiKeyRecord, FlowRecord, GrantRecord
from engine.store.store import aware, new_id, now_utc

if TYPE_CHECKING:
    from engine.store.store import Store


class Repo:
    def __init__(self, store: Store) -> None:
        self.s = store

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one or more SELECTs (no write lock on SQLite)."""
        try:
            async with self.s.engine.connect() as conn:
                yield await conn.execution_options(**{READ_ONLY: True})
        except (DBAPIError, OSError) as exc:
            raise StorageError(
                f"database error: {type(getattr(exc, 'orig', exc)).__name__}", retry_after=1
            ) from None

    @contextlib.asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; database faults become a 503 StorageError with the reason's class."""
        try:
            async with self.s.engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except (DBAPIError, OSError) as exc:
            raise StorageError(
                f"database error: {type(getattr(exc, 'orig', exc)).__name__}", retry_after=1
            ) from None


# ---- grants ------------------------------------------------------------------------------------
class GrantRepo(Repo):
    t = m.grants

    def _row(self, row: Any) -> GrantRecord:
        gid = row.id
        info = self.s.open_value("grants", "user_info", gid, row.user_info)
        return GrantRecord(
            id=gid,
            user_id=row.user_id,
            provider_id=row.provider_id,
            status=row.status,
            scopes=tuple(row.scopes or ()),
            access_token=self.s.open_value("grants", "access_token", gid, row.access_token) or "",
            refresh_token=self.s.open_value("grants", "refresh_token", gid, row.refresh_token),
            id_token=self.s.open_value("grants", "id_token", gid, row.id_token),
            user_info=json.loads(info) if info else None,
            token_type=row.token_type,
            expires_at=aware(row.expires_at),
            subject=row.subject,
            token_metadata=row.token_metadata or {},
            created_at=aware(row.created_at) or now_utc(),
            updated_at=aware(row.updated_at) or now_utc(),
            refreshed_at=aware(row.refreshed_at),
            next_refresh_at=aware(row.next_refresh_at),
            refresh_failures=row.refresh_failures,
            last_error=row.last_error,
            version=row.version,
        )

    async def get(self, grant_id: str) -> GrantRecord | None:
        async with self.read() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == grant_id))).first()
        return self._row(row) if row else None

    async def find(self, user_id: str, provider_id: str) -> GrantRecord | None:
        async with self.read() as conn:
            row = (
                await conn.execute(
                    sa.select(self.t).where(self.t.c.user_id == user_id, self.t.c.provider_id == provider_id)
                )
            ).first()
        return self._row(row) if row else None

    async def list(
        self, *, user_id: str | None = None, provider_id: str | None = None, status: str | None = None
    ) -> builtins.list[GrantRecord]:
        q = sa.select(self.t).order_by(self.t.c.created_at, self.t.c.id)
        if user_id is not None:
            q = q.where(self.t.c.user_id == user_id)
        if provider_id is not None:
            q = q.where(self.t.c.provider_id == provider_id)
        if status is not None:
            q = q.where(self.t.c.status == status)
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        return [self._row(r) for r in rows]

    async def upsert(
        self,
        user_id: str,
        provider_id: str,
        *,
        access_token: str,
        refresh_token: str | None,
        id_token: str | None,
        token_type: str,
        expires_at: datetime | None,
        scopes: Sequence[str],
        subject: str | None,
        user_info: Mapping[str, Any] | None,
        token_metadata: Mapping[str, Any],
        next_refresh_at: datetime | None,
    ) -> GrantRecord:
        """Store a completed flow's tokens: a new grant, or the user's existing one made active again."""
        for _attempt in range(3):
            try:
                return await self._upsert_once(
                    user_id,
                    provider_id,
                    access_token=access_token,
                    refresh_token=refresh_token,
                    id_token=id_token,
                    token_type=token_type,
                    expires_at=expires_at,
                    scopes=scopes,
                    subject=subject,
                    user_info=user_info,
                    token_metadata=token_metadata,
                    next_refresh_at=next_refresh_at,
                )
            except IntegrityError:
                continue  # a concurrent insert for the same user and provider: update it instead
        raise StorageError("could not store the grant: concurrent writes kept conflicting", retry_after=1)

    async def _upsert_once(self, user_id: str, provider_id: str, **v: Any) -> GrantRecord:
        now = now_utc()
        async with self.tx() as conn:
            existing = (
                await conn.execute(
                    sa.select(self.t.c.id, self.t.c.version).where(
                        self.t.c.user_id == user_id, self.t.c.provider_id == provider_id
                    )
                )
            ).first()
            gid = existing.id if existing else new_id("gr")
            values: dict[str, Any] = {
                "status": "active",
                "scopes": list(v["scopes"]),
                "access_token": self.s.seal("grants", "access_token", gid, v["access_token"]),
                "id_token": self.s.seal("grants", "id_token", gid, v["id_token"]),
                "user_info": self.s.seal("grants", "user_info", gid, json.dumps(dict(v["user_info"])))
                if v["user_info"]
                else None,
                "token_type": v["token_type"],
                "expires_at": v["expires_at"],
                "subject": v["subject"],
                "token_metadata": dict(v["token_metadata"]),
                "updated_at": now,
                "refreshed_at": None,
                "next_refresh_at": v["next_refresh_at"],
                "refresh_failures": 0,
                "last_error": None,
            }
            if v["refresh_token"] is not None or existing is None:
                values["refresh_token"] = self.s.seal("grants", "refresh_token", gid, v["refresh_token"])
            if existing:
                values["version"] = existing.version + 1
                await conn.execute(sa.update(self.t).where(self.t.c.id == gid).values(**values))
            else:
                values.update(id=gid, user_id=user_id, provider_id=provider_id, created_at=now, version=1)
                await conn.execute(sa.insert(self.t).values(**values))
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == gid))).one()
        return self._row(row)

    async def update_tokens(
        self,
        grant_id: str,
        *,
        expected_version: int,
        access_token: str,
        refresh_token: str | None,
        expires_at: datetime | None,
        scopes: Sequence[str] | None,
        id_token: str | None,
        next_refresh_at: datetime | None,
    ) -> GrantRecord | None:
        """A refresh's result, written only if nobody else wrote since ``expected_version`` (else None)."""
        now = now_utc()
        values: dict[str, Any] = {
            "access_token": self.s.seal("grants", "access_token", grant_id, access_token),
            "expires_at": expires_at,
            "refreshed_at": now,
            "updated_at": now,
            "next_refresh_at": next_refresh_at,
            "refresh_failures": 0,
            "last_error": None,
            "version": expected_version + 1,
        }
        if refresh_token is not None:  # rotation; none sent back keeps the old one
            values["refresh_token"] = self.s.seal("grants", "refresh_token", grant_id, refresh_token)
        if scopes is not None:
            values["scopes"] = list(scopes)
        if id_token is not None:
            values["id_token"] = self.s.seal("grants", "id_token", grant_id, id_token)
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(
                    self.t.c.id == grant_id, self.t.c.version == expected_version, self.t.c.status == "active"
                )
                .values(**values)
            )
            if result.rowcount != 1:
                return None
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == grant_id))).one()
        return self._row(row)

    async def set_status(self, grant_id: str, status: str, *, last_error: str | None = None) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == grant_id)
                .values(
                    status=status,
                    last_error=last_error,
                    updated_at=now_utc(),
                    version=self.t.c.version + 1,
                    next_refresh_at=None,
                )
            )
        return bool(result.rowcount)

    async def record_failure(self, grant_id: str, *, error: str, next_refresh_at: datetime) -> None:
        async with self.tx() as conn:
            await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == grant_id)
                .values(
                    refresh_failures=self.t.c.refresh_failures + 1,
                    last_error=error[:64],
                    next_refresh_at=next_refresh_at,
                    updated_at=now_utc(),
                )
            )

    async def due(self, before: datetime, limit: int = 1000) -> builtins.list[GrantRecord]:
        q = (
            sa.select(self.t)
            .where(
                self.t.c.status == "active",
                self.t.c.next_refresh_at.is_not(None),
                self.t.c.next_refresh_at <= before,
            )
            .order_by(self.t.c.next_refresh_at)
            .limit(limit)
        )
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        return [self._row(r) for r in rows]

    async def oldest_due(self, before: datetime) -> datetime | None:
        q = sa.select(sa.func.min(self.t.c.next_refresh_at)).where(
            self.t.c.status == "active", self.t.c.next_refresh_at <= before
        )
        async with self.read() as conn:
            return aware((await conn.execute(q)).scalar())

    async def delete(self, grant_id: str) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.id == grant_id))
        return bool(result.rowcount)

    async def count_by_status(self) -> dict[tuple[str, str], int]:
        q = sa.select(self.t.c.provider_id, self.t.c.status, sa.func.count()).group_by(
            self.t.c.provider_id, self.t.c.status
        )
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def delete_revoked_before(self, ts: datetime) -> int:
        """Remove grants revoked or needing re-authorization since before ``ts`` (retention)."""
        async with self.tx() as conn:
            result = await conn.execute(
                sa.delete(self.t).where(
                    self.t.c.status.in_(("revoked", "needs_reauth")), self.t.c.updated_at < ts
                )
            )
        return int(result.rowcount or 0)


# ---- flows -------------------------------------------------------------------------------------
class FlowRepo(Repo):
    t = m.flows

    def _row(self, row: Any) -> FlowRecord:
        fid = row.id
        return FlowRecord(
            id=fid,
            user_id=row.user_id,
            provider_id=row.provider_id,
            status=row.status,
            scopes=tuple(row.scopes or ()),
            code_verifier=self.s.open_value("flows", "code_verifier", fid, row.code_verifier),
            nonce=self.s.open_value("flows", "nonce", fid, row.nonce),
            redirect_uri=row.redirect_uri,
            next_uri=row.next_uri,
            grant_id=row.grant_id,
            error=row.error,
            error_description=row.error_description,
            created_at=aware(row.created_at) or now_utc(),
            expires_at=aware(row.expires_at) or now_utc(),
            started_at=aware(row.started_at),
            completed_at=aware(row.completed_at),
        )

    async def create(
        self,
        *,
        user_id: str,
        provider_id: str,
        scopes: Sequence[str],
        code_verifier: str | None,
        nonce: str | None,
        redirect_uri: str,
        next_uri: str | None,
        expires_at: datetime,
    ) -> FlowRecord:
        fid = new_id("fl")
        values = {
            "id": fid,
            "user_id": user_id,
            "provider_id": provider_id,
            "status": "pending",
            "scopes": list(scopes),
            "code_verifier": self.s.seal("flows", "code_verifier", fid, code_verifier),
            "nonce": self.s.seal("flows", "nonce", fid, nonce),
            "redirect_uri": redirect_uri,
            "next_uri": next_uri,
            "created_at": now_utc(),
            "expires_at": expires_at,
        }
        async with self.tx() as conn:
            await conn.execute(sa.insert(self.t).values(**values))
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == fid))).one()
        return self._row(row)

    async def get(self, flow_id: str) -> FlowRecord | None:
        if len(flow_id) > 40:
            return None
        async with self.read() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == flow_id))).first()
        return self._row(row) if row else None

    async def set_state(self, flow_id: str, state_hash: str, expires_at: datetime) -> bool:
        """A new state for a start click (the previous one stops working)."""
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == flow_id, self.t.c.status == "pending")
                .values(state_hash=state_hash, state_expires_at=expires_at, started_at=now_utc())
            )
        return bool(result.rowcount)

    async def consume_state(self, state_hash: str) -> FlowRecord | None:
        """The pending flow holding this state, with the state cleared atomically (single use)."""
        now = now_utc()
        async with self.tx() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.state_hash == state_hash))).first()
            if row is None:
                return None
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == row.id, self.t.c.state_hash == state_hash)
                .values(state_hash=None, state_expires_at=None)
            )
            if result.rowcount != 1:
                return None  # a concurrent callback took it
        record = self._row(row)
        expires = aware(row.state_expires_at)
        if record.status != "pending" or expires is None or expires <= now or record.expires_at <= now:
            return None
        return record

    async def finish(
        self,
        flow_id: str,
        *,
        status: str,
        expected_status: str,
        grant_id: str | None = None,
        error: str | None = None,
        error_description: str | None = None,
        pending_tokens: Mapping[str, Any] | None = None,
        pending_user_info: Mapping[str, Any] | None = None,
    ) -> bool:
        """Move a flow from ``expected_status`` to ``status`` (compare-and-set); False when it had moved."""
        values: dict[str, Any] = {"status": status, "state_hash": None}
        if status in ("completed", "failed", "expired"):
            values.update(completed_at=now_utc(), code_verifier=None, nonce=None)
        if grant_id is not None:
            values["grant_id"] = grant_id
        if error is not None:
            values["error"] = error[:64]
        if error_description is not None:
            values["error_description"] = error_description[:300]
        if pending_tokens is not None:
            values["pending_tokens"] = self.s.seal(
                "flows", "pending_tokens", flow_id, json.dumps(dict(pending_tokens))
            )
        if pending_user_info is not None:
            values["pending_user_info"] = self.s.seal(
                "flows", "pending_user_info", flow_id, json.dumps(dict(pending_user_info))
            )
        if status in ("failed", "expired"):
            values.update(pending_tokens=None, pending_user_info=None)
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == flow_id, self.t.c.status == expected_status)
                .values(**values)
            )
        return result.rowcount == 1

    async def take_pending_tokens(self, flow_id: str) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        """The tokens held for confirm_user, cleared in the same transaction (taken once)."""
        async with self.tx() as conn:
            row = (
                await conn.execute(
                    sa.select(self.t.c.pending_tokens, self.t.c.pending_user_info).where(
                        self.t.c.id == flow_id
                    )
                )
            ).first()
            if row is None or row.pending_tokens is None:
                return None
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == flow_id, self.t.c.pending_tokens.is_not(None))
                .values(pending_tokens=None, pending_user_info=None)
            )
            if result.rowcount != 1:
                return None
        tokens = json.loads(self.s.open_value("flows", "pending_tokens", flow_id, row.pending_tokens) or "{}")
        info_text = self.s.open_value("flows", "pending_user_info", flow_id, row.pending_user_info)
        return tokens, (json.loads(info_text) if info_text else None)

    async def expire_due(self, now: datetime) -> builtins.list[str]:
        async with self.tx() as conn:
            ids = [
                r.id
                for r in await conn.execute(
                    sa.select(self.t.c.id).where(
                        self.t.c.status.in_(("pending", "verifying")), self.t.c.expires_at <= now
                    )
                )
            ]
            if ids:
                await conn.execute(
                    sa.update(self.t)
                    .where(self.t.c.id.in_(ids), self.t.c.status.in_(("pending", "verifying")))
                    .values(
                        status="expired",
                        error="expired",
                        state_hash=None,
                        code_verifier=None,
                        nonce=None,
                        pending_tokens=None,
                        pending_user_info=None,
                        completed_at=now,
                    )
                )
        return ids

    async def delete_older_than(self, ts: datetime) -> int:
        async with self.tx() as conn:
            result = await conn.execute(
                sa.delete(self.t).where(
                    self.t.c.created_at < ts, self.t.c.status.in_(("completed", "failed", "expired"))
                )
            )
        return int(result.rowcount or 0)


# ---- API keys ----------------------------------------------------------------------------------
KEY_PREFIX = "kt"
VERIFY_CACHE_TTL = 10.0
TOUCH_EVERY = timedelta(minutes=1)


def _hash(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()


class ApiKeyRepo(Repo):
    t = m.api_keys

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self._cache: dict[str, tuple[float, bytes, bytes, ApiKeyRecord]] = {}

    @staticmethod
    def _record(row: Any) -> ApiKeyRecord:
        return ApiKeyRecord(
            id=row.id,
            name=row.name,
            created_at=aware(row.created_at) or now_utc(),
            last_used_at=aware(row.last_used_at),
            revoked_at=aware(row.revoked_at),
        )

    async def create(self, name: str) -> tuple[ApiKeyRecord, str]:
        """A new key; the plaintext ``kt_<id>_<secret>`` is returned once and never stored."""
        name = name.strip()
        if not name or len(name) > 128:
            raise Conflict("an API key name must be 1-128 characters")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        try:
            async with self.tx() as conn:
                await conn.execute(
                    sa.insert(self.t).values(
                        id=key_id, name=name, salt=salt, key_hash=_hash(salt, secret), created_at=now_utc()
                    )
                )
                row = (await conn.execute(sa.select(self.t).where(self.t.c.id == key_id))).one()
        except IntegrityError:
            raise Conflict(f"an API key named {name!r} already exists") from None
        return self._record(row), f"{KEY_PREFIX}_{key_id}_{secret}"

    async def verify(self, presented: str) -> ApiKeyRecord | None:
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
            return None
        key_id, secret = parts[1], parts[2]
        cached = self._cache.get(key_id)
        if cached is None or cached[0] < time.monotonic():
            async with self.read() as conn:
                row = (await conn.execute(sa.select(self.t).where(self.t.c.id == key_id))).first()
            if row is None or row.revoked_at is not None:
                self._cache.pop(key_id, None)
                return None
            cached = (
                time.monotonic() + VERIFY_CACHE_TTL,
                bytes(row.salt),
                bytes(row.key_hash),
                self._record(row),
            )
            self._cache[key_id] = cached
        _, salt, expected, record = cached
        if not hmac.compare_digest(_hash(salt, secret), expected):
            return None
        if record.last_used_at is None or record.last_used_at < now_utc() - TOUCH_EVERY:
            now = now_utc()
            with contextlib.suppress(StorageError):
                async with self.tx() as conn:
                    await conn.execute(
                        sa.update(self.t).where(self.t.c.id == key_id).values(last_used_at=now)
                    )
            record = ApiKeyRecord(record.id, record.name, record.created_at, now, record.revoked_at)
            self._cache[key_id] = (cached[0], salt, expected, record)
        return record

    async def list(self) -> builtins.list[ApiKeyRecord]:
        async with self.read() as conn:
            rows = (await conn.execute(sa.select(self.t).order_by(self.t.c.created_at))).all()
        return [self._record(r) for r in rows]

    async def revoke(self, id_or_name: str) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(
                    sa.or_(self.t.c.id == id_or_name, self.t.c.name == id_or_name),
                    self.t.c.revoked_at.is_(None),
                )
                .values(revoked_at=now_utc())
            )
        self._cache.clear()
        return bool(result.rowcount)


# ---- leases ------------------------------------------------------------------------------------
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


# ---- audit and meta ----------------------------------------------------------------------------
class AuditRepo(Repo):
    t = m.audit_events
    COLUMNS = ("event", "outcome", "provider", "tool", "request_id", "user_ref", "source_ip")

    async def write(self, event: Mapping[str, Any]) -> None:
        values: dict[str, Any] = {
            k: (str(event[k])[:256] if event.get(k) is not None else None) for k in self.COLUMNS
        }
        values["event"] = str(event.get("event", "unknown"))[:64]
        values["time"] = now_utc()
        values["data"] = {
            k: v for k, v in event.items() if k not in self.COLUMNS and k not in ("time", "timestamp")
        }
        async with self.tx() as conn:
            await conn.execute(sa.insert(self.t).values(**values))

    async def list(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        user_ref: str | None = None,
        limit: int = 10_000,
    ) -> builtins.list[dict[str, Any]]:
        q = sa.select(self.t).order_by(self.t.c.id).limit(limit)
        if since is not None:
            q = q.where(self.t.c.time >= since)
        if until is not None:
            q = q.where(self.t.c.time < until)
        if user_ref is not None:
            q = q.where(self.t.c.user_ref == user_ref)
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            item: dict[str, Any] = {"time": (aware(r.time) or now_utc()).isoformat()}
            item.update({k: getattr(r, k) for k in self.COLUMNS if getattr(r, k) is not None})
            item.update(r.data or {})
            out.append(item)
        return out


class MetaRepo(Repo):
    t = m.meta

    async def get(self, key: str) -> str | None:
        async with self.read() as conn:
            return (await conn.execute(sa.select(self.t.c.value).where(self.t.c.key == key))).scalar()

    async def set(self, key: str, value: str) -> None:
        async with self.tx() as conn:
            result = await conn.execute(sa.update(self.t).where(self.t.c.key == key).values(value=value))
            if result.rowcount == 0:
                await conn.execute(sa.insert(self.t).values(key=key, value=value))

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
