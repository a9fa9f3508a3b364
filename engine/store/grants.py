"""Grants: a user's tokens for one provider, sealed at rest; every token write bumps ``version``."""

from __future__ import annotations

import builtins
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import structlog

from engine.crypto.cipher import DecryptError
from engine.store import models as m
from engine.store.base import Repo, Row, aware, new_id, now_utc
from engine.store.coalesce import Coalescer
from engine.store.grantdue import due_ids
from engine.store.grantwrites import update_tokens_many
from engine.store.outbox import row_event, write
from engine.store.records import GrantRecord, OutboxEvent, TokenUpdate

log = structlog.get_logger("keyturn.store")

UNREADABLE = "unreadable"  # a grant whose sealed values do not decrypt: unusable, listed, deletable
# a status a grant moves into -> the webhook event written in the same transaction (engine.store.outbox)
STATUS_EVENTS = {"needs_reauth": "connection.needs_reauth", "revoked": "connection.revoked"}


class GrantRepo(Repo):
    """Grants; a row whose sealed values do not decrypt (copied, tampered) is read as ``unreadable``.

    Such a row never stops a read of other rows: it comes back with status ``unreadable`` and no
    secrets, and the first read that finds it active marks it ``unreadable`` in the database (out of
    the refresh pass), logs ``grant_unreadable`` and calls ``store.on_unreadable`` (audit, metric).
    """

    t = m.grants
    _reads: Coalescer[GrantRecord] | None = None

    def _row(self, row: Row) -> GrantRecord:
        try:
            return self._open(row)
        except DecryptError:
            return self._unreadable(row)

    def _unreadable(self, row: Row) -> GrantRecord:
        return GrantRecord(
            id=row.id,
            user_id=row.user_id,
            provider_id=row.provider_id,
            status=UNREADABLE,
            scopes=tuple(row.scopes or ()),
            access_token="",
            refresh_token=None,
            id_token=None,
            user_info=None,
            token_type=row.token_type,
            expires_at=aware(row.expires_at),
            subject=row.subject,
            token_metadata=row.token_metadata or {},
            created_at=aware(row.created_at) or now_utc(),
            updated_at=aware(row.updated_at) or now_utc(),
            refreshed_at=aware(row.refreshed_at),
            next_refresh_at=None,
            refresh_failures=row.refresh_failures,
            last_error="decrypt_failed",
            version=row.version,
            account=row.account,
            is_default=bool(row.is_default),
        )

    async def _records(self, rows: Sequence[Row]) -> builtins.list[GrantRecord]:
        records = [self._row(r) for r in rows]
        for row, record in zip(rows, records, strict=True):
            if record.status == UNREADABLE and row.status == "active":
                await self._mark_unreadable(record)
        return records

    async def _mark_unreadable(self, grant: GrantRecord) -> None:
        self.s.grant_cache.drop(grant.id)
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == grant.id, self.t.c.status == "active")
                .values(
                    status=UNREADABLE,
                    last_error="decrypt_failed",
                    next_refresh_at=None,
                    updated_at=now_utc(),
                    version=self.t.c.version + 1,
                )
            )
        if not result.rowcount:
            return  # another reader marked it first
        log.warning(
            "grant_unreadable",
            grant_id=grant.id,
            provider=grant.provider_id,
            detail="a stored value does not decrypt (tampered, or copied from another row); "
            "the grant is unusable: delete it or have the user authorize again",
        )
        hook = self.s.on_unreadable
        if hook is not None:
            try:
                hook(grant)
            except Exception as exc:  # an audit problem must not make the other grants unreadable
                log.error("grant_unreadable_hook_failed", error=type(exc).__name__)

    def _open(self, row: Row) -> GrantRecord:
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
            account=row.account,
            is_default=bool(row.is_default),
        )

    def _cached(self, record: GrantRecord | None) -> GrantRecord | None:
        if record is not None and record.status != UNREADABLE:
            self.s.grant_cache.put(record)
        return record

    async def get_many(self, ids: Sequence[str]) -> dict[str, GrantRecord]:
        """The grants with these ids that exist, by id, read in one query (a refresh pass's re-read)."""
        out: dict[str, GrantRecord] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            async with self.read() as conn:
                rows = (await conn.execute(sa.select(self.t).where(self.t.c.id.in_(chunk)))).all()
            out.update((g.id, g) for g in map(self._cached, await self._records(rows)) if g is not None)
        return out

    async def get(self, grant_id: str) -> GrantRecord | None:
        """The grant; from the cache when the row's version says it is unchanged (exact, see grantcache)."""
        cache = self.s.grant_cache
        if cache.enabled and (hit := await cache.by_id(grant_id)) is not None:
            return hit
        if self._reads is None:  # the misses of one loop turn are read in one query (get_many)
            self._reads = Coalescer(self.get_many)
        return await self._reads.get(grant_id)

    async def find(self, user_id: str, provider_id: str, account: str | None = None) -> GrantRecord | None:
        """The user's grant for ``account``; without one, the default account's (:func:`default_first`).

        From the cache when the row's version says it is unchanged (exact, see grantcache): a named
        account by its key; the default by its ``(id, version)``, read here first, since choosing
        another default changes no version.
        """
        cache = self.s.grant_cache
        if cache.enabled:  # hits first: building the query's clauses costs more than a hit
            if account is not None:
                if (hit := await cache.by_key(user_id, provider_id, account)) is not None:
                    return hit
            elif (hit := cache.default_hit(user_id, provider_id)) is not None:  # no grant written since
                return hit
        where: tuple[sa.ColumnElement[bool], ...] = (
            self.t.c.user_id == user_id,
            self.t.c.provider_id == provider_id,
        )
        if account is not None:
            q = sa.select(self.t).where(*where, self.t.c.account == account)
        else:
            if cache.enabled and not cache.holds(user_id, provider_id):
                # nothing of theirs cached, so a pick could not hit: read the default's row at once
                seen = cache.data_version.read()  # before the read (SQLite; None elsewhere)
                q = sa.select(self.t).where(*where).order_by(*default_first(self.t))
                async with self.read() as conn:
                    row = (await conn.execute(q.limit(1))).first()
                if row is None:
                    return None
                found = self._cached((await self._records([row]))[0])
                cache.picked_default(user_id, provider_id, row.id, row.version, seen)
                return found
            if cache.enabled:
                seen = cache.data_version.read()  # before the pick (SQLite; None elsewhere)
                pick = sa.select(self.t.c.id, self.t.c.version).where(*where).order_by(*default_first(self.t))
                async with self.read() as conn:
                    head = (await conn.execute(pick.limit(1))).first()
                if head is None:
                    return None
                cache.picked_default(user_id, provider_id, head.id, head.version, seen)
                if (hit := cache.matching(head.id, head.version)) is not None:
                    return hit
                where = (self.t.c.id == head.id,)
            q = sa.select(self.t).where(*where).order_by(*default_first(self.t))
        async with self.read() as conn:
            row = (await conn.execute(q.limit(1))).first()
        return self._cached((await self._records([row]))[0]) if row else None

    async def set_default(self, grant_id: str) -> GrantRecord | None:
        """Make this grant its user's default account at its provider (the others stop being it)."""
        async with self.tx() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == grant_id))).first()
            if row is None:
                return None
            await conn.execute(
                sa.update(self.t)
                .where(
                    self.t.c.user_id == row.user_id,
                    self.t.c.provider_id == row.provider_id,
                    self.t.c.id != grant_id,
                    self.t.c.is_default.is_(True),
                )
                .values(is_default=False)
            )
            await conn.execute(sa.update(self.t).where(self.t.c.id == grant_id).values(is_default=True))
        return await self.get(grant_id)

    async def list(
        self,
        *,
        user_id: str | None = None,
        provider_id: str | None = None,
        status: str | None = None,
        casefold: bool = False,
    ) -> builtins.list[GrantRecord]:
        """Grants oldest first; ``casefold`` matches ``user_id`` whatever its case (emails)."""
        q = sa.select(self.t).order_by(self.t.c.created_at, self.t.c.id)
        if user_id is not None and casefold:
            q = q.where(sa.func.lower(self.t.c.user_id) == user_id.lower())
        elif user_id is not None:
            q = q.where(self.t.c.user_id == user_id)
        if provider_id is not None:
            q = q.where(self.t.c.provider_id == provider_id)
        if status is not None:
            q = q.where(self.t.c.status == status)
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        return await self._records(rows)

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
        account: str = "default",
    ) -> GrantRecord:
        """Store a completed flow's tokens: a new grant, or the user's existing one made active again.

        One ``INSERT ... ON CONFLICT (user_id, provider_id, account) DO UPDATE`` either inserts the grant or
        takes the existing row (locked until commit, and its id); sealed values are bound to the
        row id, so an existing row then gets them sealed for its own id (a ``needs_reauth`` grant is
        repaired in place: same id, created_at and history). Concurrent writers for the same user,
        provider and account never see a unique-key error. The webhook event (``connection.created``
        for a new grant, else ``connection.reauthorized``) is written in the same transaction.
        """
        now = now_utc()

        def values(gid: str) -> dict[str, Any]:
            return {
                "status": "active",
                "scopes": list(scopes),
                "access_token": self.s.seal("grants", "access_token", gid, access_token),
                "id_token": self.s.seal("grants", "id_token", gid, id_token),
                "user_info": self.s.seal("grants", "user_info", gid, json.dumps(dict(user_info)))
                if user_info
                else None,
                "token_type": token_type,
                "expires_at": expires_at,
                "subject": subject,
                "token_metadata": dict(token_metadata),
                "updated_at": now,
                "refreshed_at": None,
                "next_refresh_at": next_refresh_at,
                "refresh_failures": 0,
                "last_error": None,
            }

        new = new_id("gr")
        insert = self.s.insert(self.t).values(
            id=new,
            user_id=user_id,
            provider_id=provider_id,
            account=account,
            created_at=now,
            version=1,
            refresh_token=self.s.seal("grants", "refresh_token", new, refresh_token),
            **values(new),
        )
        insert_or_take = insert.on_conflict_do_update(
            index_elements=[self.t.c.user_id, self.t.c.provider_id, self.t.c.account],
            set_={"updated_at": now},
        ).returning(*self.t.c)
        self.s.grant_cache.drop_key(user_id, provider_id, account)
        async with self.tx() as conn:
            row = (await conn.execute(insert_or_take)).one()
            created = row.id == new
            if not created:  # the user's grant existed: write this flow's tokens into it
                changes = values(row.id)
                changes["version"] = row.version + 1
                if refresh_token is not None or not self._opens(row):
                    changes["refresh_token"] = self.s.seal("grants", "refresh_token", row.id, refresh_token)
                update = sa.update(self.t).where(self.t.c.id == row.id).values(**changes)
                row = (await conn.execute(update.returning(*self.t.c))).one()
            kind = "connection.created" if created else "connection.reauthorized"
            await write(conn, row_event(kind, row, "active"))
        self.s.grant_cache.drop(row.id)
        self.s.outbox_written()
        return self._row(row)

    def _opens(self, existing: Row) -> bool:
        """Whether the stored refresh token decrypts (an unreadable one is replaced on re-authorization)."""
        try:
            self.s.open_value("grants", "refresh_token", existing.id, existing.refresh_token)
        except DecryptError:
            return False
        return True

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
        event: OutboxEvent | None = None,
    ) -> GrantRecord | None:
        """A refresh's result, written only if nobody else wrote since ``expected_version`` (else None).

        ``event`` (``connection.recovered``) is written in the same transaction, only with the tokens.
        """
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
        self.s.grant_cache.drop(grant_id)
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
            if event is not None:
                await write(conn, event)
        self.s.grant_cache.drop(grant_id)
        if event is not None:
            self.s.outbox_written()
        return self._row(row)

    async def update_tokens_many(self, updates: Sequence[TokenUpdate]) -> builtins.list[GrantRecord | None]:
        """Many refreshes' results in one transaction, each as :meth:`update_tokens` (None: lost the race)."""
        return await update_tokens_many(self, updates)

    async def set_status(self, grant_id: str, status: str, *, last_error: str | None = None) -> bool:
        """Set a grant's status; False when there is no such grant.

        Moving into ``needs_reauth`` or ``revoked`` writes its webhook event (:data:`STATUS_EVENTS`) in
        the same transaction; setting the status a grant already has writes none.
        """
        update = sa.update(self.t).values(
            status=status,
            last_error=last_error,
            updated_at=now_utc(),
            version=self.t.c.version + 1,
            next_refresh_at=None,
        )
        kind = STATUS_EVENTS.get(status)
        self.s.grant_cache.drop(grant_id)
        async with self.tx() as conn:
            moved = (
                await conn.execute(
                    update.where(self.t.c.id == grant_id, self.t.c.status != status).returning(*self.t.c)
                )
            ).first()
            if moved is None:
                result = await conn.execute(update.where(self.t.c.id == grant_id))
            elif kind is not None:
                await write(conn, row_event(kind, moved, status, last_error))
        self.s.grant_cache.drop(grant_id)
        if moved is None:
            return bool(result.rowcount)
        if kind is not None:
            self.s.outbox_written()
        return True

    async def record_failure(
        self,
        grant_id: str,
        *,
        error: str,
        next_refresh_at: datetime,
        event: OutboxEvent | None = None,
        at: datetime | None = None,
    ) -> None:
        """A transient refresh failure at ``at`` (now); ``event`` (``connection.refresh_failing``) is
        written in the same transaction."""
        async with self.tx() as conn:
            if event is not None:
                await write(conn, event)
            await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == grant_id)
                .values(
                    refresh_failures=self.t.c.refresh_failures + 1,
                    last_error=error[:64],
                    next_refresh_at=next_refresh_at,
                    updated_at=at or now_utc(),
                    version=self.t.c.version + 1,  # every write bumps it: cached copies are stale
                )
            )
        self.s.grant_cache.drop(grant_id)
        if event is not None:
            self.s.outbox_written()

    async def due(
        self, before: datetime, limit: int = 1000, *, exclude: Collection[str] = ()
    ) -> builtins.list[GrantRecord]:
        """Active grants due by ``before``, soonest first; ``exclude``: ids already being refreshed."""
        q = (
            sa.select(self.t)
            .where(
                self.t.c.status == "active",
                self.t.c.next_refresh_at.is_not(None),
                self.t.c.next_refresh_at <= before,
                *((self.t.c.id.not_in(list(exclude)),) if exclude else ()),
            )
            .order_by(self.t.c.next_refresh_at)
            .limit(limit)
        )
        async with self.read() as conn:
            rows = (await conn.execute(q)).all()
        return [g for g in await self._records(rows) if g.status != UNREADABLE]

    async def due_ids(
        self, before: datetime, limit: int = 1000, *, exclude: Collection[str] = ()
    ) -> builtins.list[str]:
        """Ids of active grants due by ``before`` that no one holds a lease on (:mod:`grantdue`)."""
        return await due_ids(self, before, limit, exclude=exclude)

    async def oldest_due(self, before: datetime) -> datetime | None:
        q = sa.select(sa.func.min(self.t.c.next_refresh_at)).where(
            self.t.c.status == "active", self.t.c.next_refresh_at <= before
        )
        async with self.read() as conn:
            return aware((await conn.execute(q)).scalar())

    async def delete(self, grant_id: str) -> bool:
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.id == grant_id))
        self.s.grant_cache.drop(grant_id)
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
        deleted = int(result.rowcount or 0)
        if deleted:  # a pass that deleted nothing leaves the cache (it ran every reap_interval)
            self.s.grant_cache.clear()
        return deleted


def default_first(t: sa.Table) -> tuple[sa.ColumnElement[Any], ...]:
    """The order that puts a user's default account first: the chosen one, else the first connected."""
    return (t.c.is_default.desc(), t.c.created_at, t.c.id)


def default_ids(grants: Sequence[GrantRecord]) -> set[str]:
    """The ids of the default account's grant of each (user, provider) among ``grants``."""
    best: dict[tuple[str, str], GrantRecord] = {}
    for g in sorted(grants, key=lambda g: (not g.is_default, g.created_at, g.id)):
        best.setdefault((g.user_id, g.provider_id), g)
    return {g.id for g in best.values()}
