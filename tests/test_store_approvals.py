"""engine.store.approvals (SQLite and PostgreSQL): decided once, used once, inputs sealed, one digest."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from engine.store.base import now_utc
from engine.store.store import Store

INPUTS = {"recipient": "bob@example.com", "body": "the secret plan"}


async def held(store: Store, **over: Any) -> Any:
    values: dict[str, Any] = {
        "digest": "d" * 64, "user_id": "ann", "tool_name": "Gmail.SendEmail", "caller": "app",
        "approver": "user", "inputs": INPUTS, "ttl": 600.0,
    }  # fmt: skip
    values.update(over)
    return await store.approvals.create(**values)


async def test_inputs_are_sealed_and_read_back(store_opened: Store) -> None:
    """The inputs are stored encrypted (row-bound) and read back as given; repr never shows them."""
    record = await held(store_opened)
    assert record.inputs == INPUTS and record.status == "pending" and record.state == "pending"
    async with store_opened.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT inputs FROM approvals"))).scalar_one()
    assert b"secret plan" not in bytes(raw) and "secret plan" not in repr(record)
    assert (await store_opened.approvals.current("d" * 64)) == record


async def test_a_held_call_writes_approval_requested(store_opened: Store) -> None:
    """Holding a call writes the approval.requested webhook event with it: ids, user, tool, never inputs."""
    record = await held(store_opened)
    [(_, kind, data)] = await store_opened.outbox.events()
    assert kind == "approval.requested" and data["approval_id"] == record.id and data["status"] == "pending"
    assert {data["user_id"], data["tool_name"], data["approver"]} == {"ann", "Gmail.SendEmail", "user"}
    assert "secret plan" not in str(data) and data["expires_at"].endswith("Z")


async def test_decided_once_and_used_once(store_opened: Store) -> None:
    """Of two concurrent decisions one wins; an approval is spent by exactly one of two concurrent uses."""
    record = await held(store_opened)
    results = await asyncio.gather(
        store_opened.approvals.decide(record.id, "approved", by="user", reason=None),
        store_opened.approvals.decide(record.id, "denied", by="user", reason="no"),
    )
    assert sorted(results) == [False, True]
    decided = await store_opened.approvals.get(record.id)
    assert decided is not None and decided.status in ("approved", "denied")
    if decided.status == "denied":  # the deny won: make a fresh approved one to spend
        record = await held(store_opened, digest="e" * 64)
        assert await store_opened.approvals.decide(record.id, "approved", by="user", reason=None)
    uses = await asyncio.gather(*(store_opened.approvals.use(record.id) for _ in range(3)))
    assert sorted(uses) == [False, False, True]
    assert (await store_opened.approvals.get(record.id)).status == "used"  # type: ignore[union-attr]
    assert await store_opened.approvals.current(record.digest) is None  # spent: a new call asks again


async def test_expired_cannot_be_decided_or_used(store_opened: Store) -> None:
    """Past expires_at nothing can be decided or spent, and the record reads as expired."""
    pending, approved = await held(store_opened), await held(store_opened, digest="f" * 64)
    assert await store_opened.approvals.decide(approved.id, "approved", by="app", reason=None)
    async with store_opened.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE approvals SET expires_at = :t"), {"t": now_utc() - timedelta(1)})
    assert not await store_opened.approvals.decide(pending.id, "approved", by="user", reason=None)
    assert not await store_opened.approvals.use(approved.id)
    assert (await store_opened.approvals.get(pending.id)).state == "expired"  # type: ignore[union-attr]
    assert await store_opened.approvals.current("d" * 64) is None
    assert [r.id for r in await store_opened.approvals.list(caller="app", status="expired")] != []


async def test_list_is_per_caller(store_opened: Store) -> None:
    """list returns only the caller's own approvals, filtered by user and status."""
    mine = await held(store_opened)
    await held(store_opened, caller="other-app", digest="a" * 64)
    await held(store_opened, user_id="bob", digest="b" * 64)
    assert {r.id for r in await store_opened.approvals.list(caller="app", user_id="ann")} == {mine.id}
    assert len(await store_opened.approvals.list(caller="app", status="pending")) == 2
    assert await store_opened.approvals.list(caller="app", status="approved") == []
