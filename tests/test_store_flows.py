"""engine.store.flows on SQLite and PostgreSQL: sealed verifier, single-use state, compare-and-set status."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from engine.store.store import Store
from tests.plugins.store import STORE_TOKEN, database_errors, store_flow


def soon(minutes: float = 10) -> datetime:
    return datetime.now(UTC) + timedelta(minutes=minutes)


async def test_verifier_and_nonce_sealed(store_opened: Store) -> None:
    """The PKCE verifier and nonce are stored encrypted and read back intact."""
    f = await store_flow(store_opened, code_verifier="verifier-" + "v" * 43, nonce="nonce-abc")
    async with store_opened.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT code_verifier, nonce FROM flows"))).one()
    assert b"verifier-" not in bytes(row[0]) and b"nonce-abc" not in bytes(row[1])
    got = await store_opened.flows.get(f.id)
    assert got is not None and got.code_verifier == "verifier-" + "v" * 43 and got.nonce == "nonce-abc"
    assert f.id.startswith("fl_") and f.status == "pending" and f.expires_at.tzinfo is not None


async def test_consume_state_single_use(store_opened: Store) -> None:
    """Concurrent consumers of one state: exactly one gets the flow; a second use gets none."""
    f = await store_flow(store_opened)
    assert await store_opened.flows.set_state(f.id, "h1", soon())
    got = await asyncio.gather(*(store_opened.flows.consume_state("h1") for _ in range(8)))
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].id == f.id and winners[0].code_verifier == "v" * 50
    assert await store_opened.flows.consume_state("h1") is None


async def test_consume_state_refuses_expired_and_replaced(store_opened: Store) -> None:
    """An expired state, a replaced state, and the state of a finished flow are refused."""
    f = await store_flow(store_opened)
    await store_opened.flows.set_state(f.id, "old", soon())
    await store_opened.flows.set_state(f.id, "new", soon())  # a second start click
    assert await store_opened.flows.consume_state("old") is None
    await store_opened.flows.set_state(f.id, "late", datetime.now(UTC) - timedelta(seconds=1))
    assert await store_opened.flows.consume_state("late") is None
    g = await store_flow(store_opened)
    await store_opened.flows.set_state(g.id, "h", soon())
    assert await store_opened.flows.finish(g.id, status="failed", expected_status="pending", error="x")
    assert await store_opened.flows.consume_state("h") is None
    assert not await store_opened.flows.set_state(g.id, "h2", soon())  # finished flows take no state


async def test_finish_compare_and_set(store_opened: Store) -> None:
    """finish moves a flow only from the expected status; concurrent finishers: one wins."""
    f = await store_flow(store_opened)
    results = await asyncio.gather(
        *(
            store_opened.flows.finish(f.id, status="completed", expected_status="pending", grant_id=f"gr_{i}")
            for i in range(6)
        )
    )
    assert sum(results) == 1
    done = await store_opened.flows.get(f.id)
    assert done is not None and done.status == "completed" and done.completed_at is not None
    assert done.code_verifier is None and done.nonce is None and done.grant_id is not None


async def test_pending_tokens_taken_once(store_opened: Store) -> None:
    """Tokens held for confirm_user are sealed, taken once, and cleared."""
    f = await store_flow(store_opened)
    assert await store_opened.flows.finish(
        f.id,
        status="verifying",
        expected_status="pending",
        pending_tokens={"access_token": STORE_TOKEN},
        pending_user_info={"sub": "42"},
    )
    async with store_opened.engine.connect() as conn:
        blob = (await conn.execute(sa.text("SELECT pending_tokens FROM flows"))).scalar()
    assert blob is not None and STORE_TOKEN.encode() not in bytes(blob)
    taken = await asyncio.gather(*(store_opened.flows.take_pending_tokens(f.id) for _ in range(4)))
    assert [t for t in taken if t is not None] == [({"access_token": STORE_TOKEN}, {"sub": "42"})]
    assert await store_opened.flows.take_pending_tokens(f.id) is None


async def test_expire_and_delete(store_opened: Store) -> None:
    """Expired pending flows are marked expired (secrets dropped); old finished flows are deleted."""
    old = await store_flow(store_opened, expires_at=datetime.now(UTC) - timedelta(minutes=1))
    live = await store_flow(store_opened)
    assert await store_opened.flows.expire_due(datetime.now(UTC)) == [old.id]
    expired = await store_opened.flows.get(old.id)
    assert expired is not None and expired.status == "expired" and expired.code_verifier is None
    assert await store_opened.flows.delete_older_than(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert await store_opened.flows.get(old.id) is None
    assert await store_opened.flows.get(live.id) is not None


def flow_values(**over: object) -> dict[str, object]:
    values: dict[str, object] = dict(
        user_id="u",
        provider_id="p",
        scopes=["a"],
        code_verifier="v" * 50,
        nonce=None,
        redirect_uri="http://127.0.0.1/cb",
        next_uri=None,
        expires_at=soon(),
    )
    values.update(over)
    return values


async def test_create_or_reuse_one_flow_per_key_under_a_race(store_opened: Store) -> None:
    """Concurrent create_or_reuse calls with one key create exactly one flow; all get it; no key error."""
    with database_errors(store_opened) as errors:
        got = await asyncio.gather(
            *(
                store_opened.flows.create_or_reuse("k" * 64, valid_after=soon(1), **flow_values())
                for _ in range(8)
            )
        )
    assert errors == []
    assert len({flow.id for flow, _ in got}) == 1 and [c for _, c in got].count(True) == 1
    async with store_opened.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM flows"))).scalar() == 1


async def test_reuse_key_released_when_flow_moves_or_nearly_expires(store_opened: Store) -> None:
    """A finished flow or one valid too briefly gives up its key: the next call creates a new flow."""
    key = "r" * 64
    first, created = await store_opened.flows.create_or_reuse(key, valid_after=soon(1), **flow_values())
    assert created and await store_opened.flows.find_reusable(key, valid_after=soon(1)) == first
    assert await store_opened.flows.finish(first.id, status="failed", expected_status="pending", error="x")
    assert await store_opened.flows.find_reusable(key, valid_after=soon(1)) is None
    second, created = await store_opened.flows.create_or_reuse(
        key, valid_after=soon(1), **flow_values(expires_at=soon(2))
    )
    assert created and second.id != first.id
    third, created = await store_opened.flows.create_or_reuse(key, valid_after=soon(3), **flow_values())
    assert created and third.id != second.id  # second has under the wanted time left
    assert (await store_opened.flows.get(second.id)).status == "pending"  # still usable by its link
