"""Tool calls held for a decision (``tools.approval``), SECURITY.md 40.

A row is bound to the digest of caller, user, tool and inputs; its inputs are sealed like tokens. A
decision is taken once (``pending`` -> ``approved | denied``, only before ``expires_at``) and an
approval is used once (``approved`` -> ``used``): both are single conditional UPDATEs, so of two
concurrent deciders or retried calls exactly one wins, on any replica.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from datetime import datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa

from engine.store import models as m
from engine.store.base import Repo, aware, new_id, now_utc
from engine.store.outbox import write
from engine.store.records import OutboxEvent

ApprovalStatus = Literal["pending", "approved", "denied", "used"]


@dataclasses.dataclass(frozen=True, repr=False)
class ApprovalRecord:
    id: str
    digest: str
    user_id: str
    tool_name: str
    caller: str
    approver: str  # user | app
    inputs: dict[str, Any]
    status: str  # pending | approved | denied | used
    reason: str | None
    decided_by: str | None
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at <= (now or now_utc())

    @property
    def state(self) -> str:
        """``status``, or ``expired`` for an undecided or unused approval past its time."""
        if self.status in ("pending", "approved") and self.expired():
            return "expired"
        return self.status

    def __repr__(self) -> str:  # never the inputs
        return f"ApprovalRecord(id={self.id!r}, tool_name={self.tool_name!r}, status={self.status!r})"


class ApprovalRepo(Repo):
    t = m.approvals

    def _row(self, row: Any) -> ApprovalRecord:
        r = row._mapping
        raw = self.s.open_value("approvals", "inputs", r["id"], r["inputs"]) or "{}"
        return ApprovalRecord(
            id=r["id"],
            digest=r["digest"],
            user_id=r["user_id"],
            tool_name=r["tool_name"],
            caller=r["caller"],
            approver=r["approver"],
            inputs=json.loads(raw),
            status=r["status"],
            reason=r["reason"],
            decided_by=r["decided_by"],
            created_at=aware(r["created_at"]) or now_utc(),
            expires_at=aware(r["expires_at"]) or now_utc(),
            decided_at=aware(r["decided_at"]),
        )

    async def create(
        self,
        *,
        digest: str,
        user_id: str,
        tool_name: str,
        caller: str,
        approver: str,
        inputs: dict[str, Any],
        ttl: float,
    ) -> ApprovalRecord:
        aid = new_id("ap")
        now = now_utc()
        expires_at = now + timedelta(seconds=ttl)
        values = {
            "id": aid,
            "digest": digest,
            "user_id": user_id,
            "tool_name": tool_name,
            "caller": caller[:128],
            "approver": approver,
            "inputs": self.s.seal("approvals", "inputs", aid, json.dumps(inputs, sort_keys=True)),
            "status": "pending",
            "created_at": now,
            "expires_at": expires_at,
        }
        # the webhook event (engine.store.outbox) in the same transaction; never the inputs
        requested = OutboxEvent(
            "approval.requested",
            {
                "approval_id": aid,
                "user_id": user_id,
                "tool_name": tool_name,
                "approver": approver,
                "status": "pending",
                "expires_at": expires_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            },
        )
        async with self.tx() as conn:
            await conn.execute(sa.insert(self.t).values(**values))
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == aid))).one()
            await write(conn, requested)
        self.s.outbox_written()
        return self._row(row)

    async def get(self, approval_id: str) -> ApprovalRecord | None:
        async with self.read() as conn:
            row = (await conn.execute(sa.select(self.t).where(self.t.c.id == approval_id[:40]))).first()
        return self._row(row) if row else None

    async def current(self, digest: str) -> ApprovalRecord | None:
        """The newest unexpired approval for ``digest`` that is pending, approved or denied."""
        async with self.read() as conn:
            row = (
                await conn.execute(
                    sa.select(self.t)
                    .where(
                        self.t.c.digest == digest,
                        self.t.c.status.in_(("pending", "approved", "denied")),
                        self.t.c.expires_at > now_utc(),
                    )
                    .order_by(self.t.c.created_at.desc())
                    .limit(1)
                )
            ).first()
        return self._row(row) if row else None

    async def decide(
        self, approval_id: str, decision: Literal["approved", "denied"], *, by: str, reason: str | None
    ) -> bool:
        """Take the decision once: False when it was decided already or has expired."""
        now = now_utc()
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(self.t.c.id == approval_id, self.t.c.status == "pending", self.t.c.expires_at > now)
                .values(status=decision, decided_by=by[:300], reason=reason, decided_at=now)
            )
        return bool(result.rowcount)

    async def use(self, approval_id: str) -> bool:
        """Spend an approval: True for exactly one caller, and only before it expires."""
        async with self.tx() as conn:
            result = await conn.execute(
                sa.update(self.t)
                .where(
                    self.t.c.id == approval_id,
                    self.t.c.status == "approved",
                    self.t.c.expires_at > now_utc(),
                )
                .values(status="used")
            )
        return bool(result.rowcount)

    async def list(
        self, *, caller: str, user_id: str | None = None, status: str | None = None, limit: int = 100
    ) -> builtins.list[ApprovalRecord]:
        """The caller's approvals (newest first); ``status`` pending/approved/denied/used/expired."""
        now = now_utc()
        q = sa.select(self.t).where(self.t.c.caller == caller)
        if user_id:
            q = q.where(self.t.c.user_id == user_id)
        if status == "expired":
            q = q.where(self.t.c.status.in_(("pending", "approved")), self.t.c.expires_at <= now)
        elif status in ("pending", "approved"):
            q = q.where(self.t.c.status == status, self.t.c.expires_at > now)
        elif status:
            q = q.where(self.t.c.status == status)
        async with self.read() as conn:
            rows = (await conn.execute(q.order_by(self.t.c.created_at.desc()).limit(limit))).all()
        return [self._row(r) for r in rows]

    async def delete_expired(self, before: datetime) -> int:
        async with self.tx() as conn:
            result = await conn.execute(sa.delete(self.t).where(self.t.c.expires_at < before))
        return int(result.rowcount or 0)
