"""The webhook outbox: events written in the transaction of the change they report, and their deliveries.

A repository that commits a change webhooks report (a grant created, re-authorized, needing
re-authorization, revoked; a flow failed) calls :func:`write` on the connection of that change's
transaction, so the event exists exactly when the change does: a crash before the commit loses both,
one after it keeps both. :class:`OutboxRepo` is what the deliverer (``engine.webhooks``) reads: it
fans each new event out into one delivery row per endpoint that wants it, hands out the deliveries
due, and records each attempt. Event data never holds a token: ids, user, provider, scopes, status
and a reason word.
"""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from engine.store import models as m
from engine.store.base import Repo, Row, aware, new_id, now_utc
from engine.store.records import OutboxEvent

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"

Routes = Callable[[str], Sequence[str]]  # event type -> ids of the endpoints that want it


def connection_event(
    type: str,
    *,
    grant_id: str,
    user_id: str,
    provider: str,
    scopes: Sequence[str] | None,
    status: str,
    reason: str | None = None,
    account: str = "default",
) -> OutboxEvent:
    """A ``connection.*`` event about one grant (``account``: which of the user's accounts there)."""
    data: dict[str, Any] = {
        "grant_id": grant_id,
        "user_id": user_id,
        "provider": provider,
        "account": account,
        "scopes": list(scopes or ()),
        "status": status,
    }
    if reason:
        data["reason"] = reason[:64]
    return OutboxEvent(type, data)


def row_event(kind: str, row: Row, status: str, reason: str | None = None) -> OutboxEvent:
    """A ``connection.*`` event about the grant in ``row`` (a row of the grants table)."""
    return connection_event(
        kind,
        grant_id=row.id,
        user_id=row.user_id,
        provider=row.provider_id,
        scopes=row.scopes,
        status=status,
        reason=reason,
        account=row.account,
    )


async def write(conn: AsyncConnection, event: OutboxEvent) -> str:
    """Insert ``event`` on ``conn`` (the caller's transaction); returns its id (``evt_...``)."""
    event_id = new_id("evt")
    await conn.execute(
        sa.insert(m.webhook_events).values(
            id=event_id, type=event.type, created_at=now_utc(), data=dict(event.data)
        )
    )
    return event_id


@dataclasses.dataclass(frozen=True)
class Delivery:
    """One event for one endpoint, with the event's type, data and time."""

    id: str
    event_id: str
    endpoint_id: str
    status: str  # pending | delivered | failed
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_error: str | None
    delivered_at: datetime | None
    type: str
    event_created_at: datetime
    data: Mapping[str, Any]


class OutboxRepo(Repo):
    e = m.webhook_events
    d = m.webhook_deliveries

    async def add(self, event: OutboxEvent) -> str:
        """Write ``event`` in a transaction of its own (for a change committed elsewhere)."""
        async with self.tx() as conn:
            event_id = await write(conn, event)
        self.s.outbox_written()
        return event_id

    def _delivery(self, row: Row) -> Delivery:
        return Delivery(
            id=row.id,
            event_id=row.event_id,
            endpoint_id=row.endpoint_id,
            status=row.status,
            attempts=row.attempts,
            created_at=aware(row.created_at) or now_utc(),
            next_attempt_at=aware(row.next_attempt_at),
            last_attempt_at=aware(row.last_attempt_at),
            last_error=row.last_error,
            delivered_at=aware(row.delivered_at),
            type=row.type,
            event_created_at=aware(row.event_created_at) or now_utc(),
            data=row.data or {},
        )

    def _joined(self) -> sa.Select[Any]:
        return sa.select(
            *self.d.c, self.e.c.type, self.e.c.created_at.label("event_created_at"), self.e.c.data
        ).join(self.e, self.e.c.id == self.d.c.event_id)

    async def fan_out(self, routes: Routes, *, limit: int = 500) -> int:
        """A delivery row per endpoint for each event not yet dispatched; returns how many events."""
        now = now_utc()
        async with self.tx() as conn:
            rows = (
                await conn.execute(
                    sa.select(self.e.c.id, self.e.c.type)
                    .where(self.e.c.dispatched_at.is_(None))
                    .order_by(self.e.c.created_at, self.e.c.id)
                    .limit(limit)
                )
            ).all()
            if not rows:
                return 0
            for row in rows:
                await self._ensure(conn, row.id, routes(row.type), now)
            await conn.execute(
                sa.update(self.e).where(self.e.c.id.in_([r.id for r in rows])).values(dispatched_at=now)
            )
        return len(rows)

    async def _ensure(
        self, conn: AsyncConnection, event_id: str, endpoints: Sequence[str], now: datetime
    ) -> None:
        if not endpoints:
            return
        insert = self.s.insert(self.d).values(
            [
                {
                    "id": new_id("whd"),
                    "event_id": event_id,
                    "endpoint_id": endpoint,
                    "status": PENDING,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
                for endpoint in endpoints
            ]
        )
        await conn.execute(
            insert.on_conflict_do_nothing(index_elements=[self.d.c.event_id, self.d.c.endpoint_id])
        )

    async def due(self, now: datetime, *, limit: int = 100) -> builtins.list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest event first."""
        q = (
            self._joined()
            .where(self.d.c.status == PENDING, self.d.c.next_attempt_at <= now)
            .order_by(self.e.c.created_at, self.d.c.id)
            .limit(limit)
        )
        async with self.read() as conn:
            return [self._delivery(r) for r in (await conn.execute(q)).all()]

    async def next_due(self) -> datetime | None:
        """When the earliest pending delivery is due (None: nothing pending)."""
        q = sa.select(sa.func.min(self.d.c.next_attempt_at)).where(self.d.c.status == PENDING)
        async with self.read() as conn:
            return aware((await conn.execute(q)).scalar())

    async def has_undispatched(self) -> bool:
        q = sa.select(self.e.c.id).where(self.e.c.dispatched_at.is_(None)).limit(1)
        async with self.read() as conn:
            return (await conn.execute(q)).first() is not None

    async def record_attempt(
        self,
        delivery_id: str,
        *,
        status: str,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """One attempt: ``delivered``, ``pending`` again (retry at ``next_attempt_at``), or ``failed``."""
        now = now_utc()
        values: dict[str, Any] = {
            "status": status,
            "attempts": self.d.c.attempts + 1,
            "last_attempt_at": now,
            "last_error": error[:64] if error else None,
            "next_attempt_at": next_attempt_at if status == PENDING else None,
        }
        if status == DELIVERED:
            values["delivered_at"] = now
        async with self.tx() as conn:
            await conn.execute(
                sa.update(self.d)
                .where(self.d.c.id == delivery_id, self.d.c.status == PENDING)
                .values(**values)
            )

    async def fail_pending(self, endpoint_id: str, error: str) -> int:
        """Mark every pending delivery to ``endpoint_id`` failed (the endpoint is no longer configured)."""
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.d)
                .where(self.d.c.endpoint_id == endpoint_id, self.d.c.status == PENDING)
                .values(status=FAILED, last_error=error[:64], next_attempt_at=None)
            )
        return int(result.rowcount or 0)

    async def list(
        self, *, status: str | None = None, endpoint_id: str | None = None, limit: int = 50
    ) -> builtins.list[Delivery]:
        """Deliveries, newest event first."""
        q = self._joined().order_by(self.e.c.created_at.desc(), self.d.c.id).limit(limit)
        if status is not None:
            q = q.where(self.d.c.status == status)
        if endpoint_id is not None:
            q = q.where(self.d.c.endpoint_id == endpoint_id)
        async with self.read() as conn:
            return [self._delivery(r) for r in (await conn.execute(q)).all()]

    async def events(self) -> builtins.list[tuple[str, str, Mapping[str, Any]]]:
        """Every stored event as ``(id, type, data)``, oldest first (tests, diagnostics)."""
        q = sa.select(self.e.c.id, self.e.c.type, self.e.c.data).order_by(self.e.c.created_at, self.e.c.id)
        async with self.read() as conn:
            return [(r.id, r.type, r.data) for r in (await conn.execute(q)).all()]

    async def replay(self, target: str, routes: Routes, *, endpoint_id: str | None = None) -> int:
        """Deliver again: an event (``evt_...``, to every endpoint that wants it now) or one delivery
        (``whd_...``); the attempts and the give-up clock start over. Returns the deliveries queued."""
        now = now_utc()
        reset = {
            "status": PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
            "last_error": None,
            "delivered_at": None,
        }
        async with self.tx() as conn:
            if target.startswith("whd_"):
                q = sa.update(self.d).where(self.d.c.id == target)
                if endpoint_id is not None:
                    q = q.where(self.d.c.endpoint_id == endpoint_id)
                result = await conn.execute(q.values(**reset))
                count = int(result.rowcount or 0)
            else:
                row = (await conn.execute(sa.select(self.e.c.type).where(self.e.c.id == target))).first()
                if row is None:
                    return 0
                wanted = [e for e in routes(row.type) if endpoint_id is None or e == endpoint_id]
                q = sa.update(self.d).where(self.d.c.event_id == target)
                if endpoint_id is not None:
                    q = q.where(self.d.c.endpoint_id == endpoint_id)
                await conn.execute(q.values(**reset))
                await self._ensure(conn, target, wanted, now)
                await conn.execute(sa.update(self.e).where(self.e.c.id == target).values(dispatched_at=now))
                counted = sa.select(sa.func.count()).where(
                    self.d.c.event_id == target, self.d.c.status == PENDING
                )
                if endpoint_id is not None:
                    counted = counted.where(self.d.c.endpoint_id == endpoint_id)
                count = int((await conn.execute(counted)).scalar() or 0)
        if count:
            self.s.outbox_written()
        return count

    async def delete_finished_before(self, ts: datetime) -> int:
        """Retention: events older than ``ts`` with no pending delivery, and their deliveries."""
        async with self.tx() as conn:
            pending = sa.select(self.d.c.event_id).where(self.d.c.status == PENDING)
            old = sa.select(self.e.c.id).where(
                self.e.c.created_at < ts, self.e.c.dispatched_at.is_not(None), self.e.c.id.not_in(pending)
            )
            ids = [r.id for r in (await conn.execute(old)).all()]
            if not ids:
                return 0
            await conn.execute(sa.delete(self.d).where(self.d.c.event_id.in_(ids)))
            await conn.execute(sa.delete(self.e).where(self.e.c.id.in_(ids)))
        return len(ids)
