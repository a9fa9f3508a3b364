"""Audit events for the database sink (one row per event; non-column fields kept in ``data``)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, aware, now_utc


class AuditRepo(Repo):
    t = m.audit_events
    COLUMNS = m.AUDIT_COLUMNS

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
