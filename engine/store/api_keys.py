"""API keys managed with ``keyturn api-keys``: ``kt_<id>_<secret>``, stored as HMAC-SHA256(salt, secret)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa

from engine.errors import Conflict, StorageError
from engine.store import models as m
from engine.store.base import Database, Repo, Row, aware, now_utc
from engine.store.records import ApiKeyRecord

KEY_PREFIX = "kt"
VERIFY_CACHE_TTL = 10.0
KNOWN_IDS_TTL = 1.0  # with known_only, the id list is read again at most this often
TOUCH_EVERY = timedelta(minutes=1)


def _hash(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()


class ApiKeyRepo(Repo):
    t = m.api_keys

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self._cache: dict[str, tuple[float, bytes, bytes, ApiKeyRecord]] = {}
        self._known: tuple[float, frozenset[str]] = (float("-inf"), frozenset())
        self._known_lock = asyncio.Lock()

    @staticmethod
    def _record(row: Row) -> ApiKeyRecord:
        return ApiKeyRecord(
            id=row.id,
            name=row.name,
            created_at=aware(row.created_at) or now_utc(),
            last_used_at=aware(row.last_used_at),
            revoked_at=aware(row.revoked_at),
            tools=_tools(row.tools),
        )

    async def create(self, name: str, tools: Sequence[str] | None = None) -> tuple[ApiKeyRecord, str]:
        """A new key; the plaintext ``kt_<id>_<secret>`` is returned once and never stored.

        ``tools``: globs over ``Toolkit.Tool`` names the key is limited to (None: every tool).
        """
        name = name.strip()
        if not name or len(name) > 128:
            raise Conflict("an API key name must be 1-128 characters")
        globs = None if tools is None else [g.strip() for g in tools]
        if globs is not None and (not globs or any(not g or len(g) > 200 for g in globs)):
            raise Conflict("tool globs must be 1-200 characters each, at least one")
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        insert = (
            self.s.insert(self.t)
            .values(
                id=key_id,
                name=name,
                salt=salt,
                key_hash=_hash(salt, secret),
                created_at=now_utc(),
                tools=None if globs is None else json.dumps(globs),
            )
            .on_conflict_do_nothing()
            .returning(*self.t.c)
        )
        async with self.tx() as conn:
            row = (await conn.execute(insert)).first()
        if row is None:
            raise Conflict(f"an API key named {name!r} already exists")
        return self._record(row), f"{KEY_PREFIX}_{key_id}_{secret}"

    async def _is_known(self, key_id: str) -> bool:
        """Whether ``key_id`` names an unrevoked key, from one id list read at most every KNOWN_IDS_TTL."""
        read_at, ids = self._known
        if key_id in ids or time.monotonic() - read_at < KNOWN_IDS_TTL:
            return key_id in ids
        async with self._known_lock:  # callers arriving meanwhile share the one read
            if self._known[0] == read_at:
                async with self.read() as conn:
                    rows = await conn.execute(sa.select(self.t.c.id).where(self.t.c.revoked_at.is_(None)))
                    self._known = (time.monotonic(), frozenset(r.id for r in rows))
        return key_id in self._known[1]

    async def verify(self, presented: str, *, known_only: bool = False) -> ApiKeyRecord | None:
        """The key's record when ``presented`` is a valid, unrevoked key.

        ``known_only`` (the caller's address is over its failure limit): an id neither cached nor in
        the shared id list costs no query of its own, so floods of made-up keys stay cheap.
        """
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
            return None
        key_id, secret = parts[1], parts[2]
        cached = self._cache.get(key_id)
        if cached is None and known_only and not await self._is_known(key_id):
            return None
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
            record = dataclasses.replace(record, last_used_at=now)
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
        self._known = (float("-inf"), frozenset())
        return bool(result.rowcount)


def _tools(raw: str | None) -> tuple[str, ...] | None:
    """The stored globs; an unreadable value limits the key to nothing rather than to everything."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return ()
    if not isinstance(value, list):
        return ()
    return tuple(str(g) for g in value if isinstance(g, str))
