"""engine.store.outbox (SQLite, PostgreSQL): events committed with their change, fan-out, attempts, replay."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from engine.errors import StorageError
from engine.store.base import now_utc
from engine.store.outbox import OutboxEvent
from engine.store.store import Store
from tests.plugins.store import STORE_REFRESH, STORE_TOKEN, store_grant


async def types(store: Store) -> list[str]:
    return [t for _, t, _ in await store.outbox.events()]


def everyone(event_type: str) -> list[str]:
    return ["a", "b"]


async def test_grant_writes_carry_their_events(store_opened: Store) -> None:
    """A new grant writes connection.created, the same user again connection.reauthorized; no token."""
    g = await store_grant(store_opened)
    again = await store_grant(store_opened)
    assert again.id == g.id
    events = await store_opened.outbox.events()
    assert [t for _, t, _ in events] == ["connection.created", "connection.reauthorized"]
    assert events[0][2] == {
        "grant_id": g.id,
        "user_id": "u1",
        "provider": "p",
        "account": "default",
        "scopes": ["a"],
        "status": "active",
    }
    text = json.dumps([e[2] for e in events])
    assert STORE_TOKEN not in text and STORE_REFRESH not in text


async def test_status_changes_write_one_event_each(store_opened: Store) -> None:
    """needs_reauth (with its reason) and revoked each write one event; setting a status again writes none."""
    g = await store_grant(store_opened)
    assert await store_opened.grants.set_status(g.id, "needs_reauth", last_error="invalid_grant")
    assert await store_opened.grants.set_status(g.id, "needs_reauth", last_error="invalid_grant")
    assert await store_opened.grants.set_status(g.id, "revoked")
    assert not await store_opened.grants.set_status("gr_missing", "revoked")
    events = await store_opened.outbox.events()
    assert [t for _, t, _ in events] == [
        "connection.created",
        "connection.needs_reauth",
        "connection.revoked",
    ]
    assert events[1][2]["reason"] == "invalid_grant" and events[1][2]["status"] == "needs_reauth"


async def test_an_event_that_cannot_be_written_undoes_its_change(store_opened: Store) -> None:
    """With the outbox table gone, storing a grant fails and leaves no grant: one transaction."""
    async with store_opened.engine.begin() as conn:
        await conn.execute(sa.text("DROP TABLE webhook_events"))
    with pytest.raises(StorageError):
        await store_grant(store_opened)
    async with store_opened.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM grants"))).scalar() == 0


async def test_a_lost_version_check_writes_no_recovered_event(store_opened: Store) -> None:
    """update_tokens with a stale version writes neither the tokens nor the event given with them."""
    g = await store_grant(store_opened)
    event = OutboxEvent("connection.recovered", {"grant_id": g.id})
    stale = dict(access_token="x", refresh_token=None, expires_at=None, scopes=None, id_token=None)
    assert await store_opened.grants.update_tokens(
        g.id, expected_version=g.version + 5, next_refresh_at=None, event=event, **stale
    ) is None  # fmt: skip
    assert await types(store_opened) == ["connection.created"]
    assert await store_opened.grants.update_tokens(
        g.id, expected_version=g.version, next_refresh_at=None, event=event, **stale
    ) is not None  # fmt: skip
    assert await types(store_opened) == ["connection.created", "connection.recovered"]


async def test_flow_failed_only_when_the_flow_moved(store_opened: Store) -> None:
    """finish(failed) writes flow.failed once; a compare-and-set that lost writes nothing."""
    flow = await store_opened.flows.create(
        user_id="u1", provider_id="p", scopes=["read"], code_verifier="v", nonce=None,
        redirect_uri="http://127.0.0.1/cb", next_uri=None, expires_at=now_utc() + timedelta(minutes=5),
    )  # fmt: skip
    assert await store_opened.flows.finish(
        flow.id, status="failed", expected_status="pending", error="access_denied"
    )
    assert not await store_opened.flows.finish(flow.id, status="failed", expected_status="pending", error="x")
    [(_, kind, data)] = await store_opened.outbox.events()
    assert kind == "flow.failed"
    assert data == {"flow_id": flow.id, "user_id": "u1", "provider": "p", "reason": "access_denied"}


async def test_fan_out_attempts_and_replay(store_opened: Store) -> None:
    """One delivery per endpoint; delivered and failed are final; replay queues an event again."""
    outbox = store_opened.outbox
    event_id = await outbox.add(OutboxEvent("connection.created", {"grant_id": "gr_x"}))
    assert await outbox.fan_out(everyone) == 1 and await outbox.fan_out(everyone) == 0
    due = await outbox.due(now_utc())
    assert sorted(d.endpoint_id for d in due) == ["a", "b"] and {d.event_id for d in due} == {event_id}
    a, b = sorted(due, key=lambda d: d.endpoint_id)
    await outbox.record_attempt(a.id, status="delivered")
    later = now_utc() + timedelta(hours=1)
    await outbox.record_attempt(b.id, status="pending", error="http_500", next_attempt_at=later)
    assert await outbox.due(now_utc()) == [] and await outbox.next_due() == later
    await outbox.record_attempt(b.id, status="failed", error="http_500")
    await outbox.record_attempt(b.id, status="delivered")  # a final status does not move
    rows = {d.endpoint_id: d for d in await outbox.list()}
    assert rows["a"].status == "delivered" and rows["a"].delivered_at is not None
    assert rows["b"].status == "failed" and rows["b"].attempts == 2 and rows["b"].last_error == "http_500"
    assert await outbox.list(status="failed", endpoint_id="b") == [rows["b"]]
    assert await outbox.replay(event_id, everyone, endpoint_id="b") == 1
    [again] = await outbox.due(now_utc())
    assert again.id == b.id and again.attempts == 0 and again.last_error is None
    assert await outbox.replay(a.id, everyone) == 1 and len(await outbox.due(now_utc())) == 2
    assert await outbox.replay("evt_unknown", everyone) == 0


async def test_retention_keeps_pending_events(store_opened: Store) -> None:
    """Old finished events are deleted with their deliveries; an event still pending is kept."""
    outbox = store_opened.outbox
    done = await outbox.add(OutboxEvent("flow.failed", {}))
    waiting = await outbox.add(OutboxEvent("flow.failed", {}))
    await outbox.fan_out(lambda t: ["a"])
    for d in await outbox.due(now_utc()):
        if d.event_id == done:
            await outbox.record_attempt(d.id, status="delivered")
    assert await outbox.delete_finished_before(now_utc() + timedelta(seconds=1)) == 1
    assert [e[0] for e in await outbox.events()] == [waiting]
