"""Flows: one authorization in progress; state single use, status moved by compare-and-set."""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Unpack

import sqlalchemy as sa

from engine.errors import StorageError
from engine.store import models as m
from engine.store.base import Repo, Row, aware, new_id, now_utc
from engine.store.outbox import write
from engine.store.records import FlowRecord, NewFlow, OutboxEvent


class FlowRepo(Repo):
    t = m.flows

    def _row(self, row: Row) -> FlowRecord:
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
            account=row.account,
        )

    async def create(self, **values: Unpack[NewFlow]) -> FlowRecord:
        """A new pending flow."""
        flow = await self._insert(None, values)
        assert flow is not None  # without a reuse key nothing conflicts
        return flow

    async def _insert(self, reuse_key: str | None, v: NewFlow) -> FlowRecord | None:
        """Insert a pending flow; with ``reuse_key``, None when another flow holds that key."""
        fid = new_id("fl")
        insert = self.s.insert(self.t).values(
            id=fid,
            user_id=v["user_id"],
            provider_id=v["provider_id"],
            account=v.get("account") or "default",
            status="pending",
            scopes=list(v["scopes"]),
            code_verifier=self.s.seal("flows", "code_verifier", fid, v["code_verifier"]),
            nonce=self.s.seal("flows", "nonce", fid, v["nonce"]),
            redirect_uri=v["redirect_uri"],
            next_uri=v["next_uri"],
            created_at=now_utc(),
            expires_at=v["expires_at"],
            reuse_key=reuse_key,
        )
        if reuse_key is not None:
            insert = insert.on_conflict_do_nothing(index_elements=[self.t.c.reuse_key])
        async with self.tx() as conn:
            row = (await conn.execute(insert.returning(*self.t.c))).first()
        return self._row(row) if row else None

    async def find_reusable(self, reuse_key: str, *, valid_after: datetime) -> FlowRecord | None:
        """The pending flow holding ``reuse_key`` when it is still valid at ``valid_after``."""
        async with self.read() as conn:
            row = (
                await conn.execute(
                    sa.select(self.t).where(
                        self.t.c.reuse_key == reuse_key,
                        self.t.c.status == "pending",
                        self.t.c.expires_at > valid_after,
                    )
                )
            ).first()
        return self._row(row) if row else None

    async def create_or_reuse(
        self, reuse_key: str, *, valid_after: datetime, **values: Unpack[NewFlow]
    ) -> tuple[FlowRecord, bool]:
        """The pending flow for ``reuse_key`` (valid at ``valid_after``), or a new one: ``(flow, created)``.

        The key is unique in the table, so concurrent callers (any replica) get one flow: the loser
        of the insert reads the winner's. A holder that is no longer worth handing out (nearly or
        already expired, or no longer pending) lets go of the key first.
        """
        for _ in range(5):
            found = await self.find_reusable(reuse_key, valid_after=valid_after)
            if found is not None:
                return found, False
            async with self.tx() as conn:
                await conn.execute(
                    sa.update(self.t)
                    .where(
                        self.t.c.reuse_key == reuse_key,
                        sa.or_(self.t.c.status != "pending", self.t.c.expires_at <= valid_after),
                    )
                    .values(reuse_key=None)
                )
            created = await self._insert(reuse_key, values)
            if created is not None:
                return created, True
            # another authorize created it meanwhile: read it
        raise StorageError("could not create a flow: its reuse key stayed contended", retry_after=1)

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
        """Move a flow from ``expected_status`` to ``status`` (compare-and-set); False when it had moved.

        Moving to ``failed`` writes the ``flow.failed`` webhook event in the same transaction.
        """
        values: dict[str, Any] = {"status": status, "state_hash": None, "reuse_key": None}
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
        update = sa.update(self.t).where(self.t.c.id == flow_id, self.t.c.status == expected_status)
        async with self.tx() as conn:
            if status != "failed":
                result = await conn.execute(update.values(**values))
                return result.rowcount == 1
            row = (
                await conn.execute(update.values(**values).returning(self.t.c.user_id, self.t.c.provider_id))
            ).first()
            if row is None:
                return False
            data = {"flow_id": flow_id, "user_id": row.user_id, "provider": row.provider_id}
            await write(conn, OutboxEvent("flow.failed", {**data, "reason": (error or "failed")[:64]}))
        self.s.outbox_written()
        return True

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
                        reuse_key=None,
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
