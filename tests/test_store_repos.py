"""engine.store.repos on SQLite and PostgreSQL: sealed secrets, single-use state, CAS, leases, API keys."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine.crypto.cipher import DecryptError, Keyring
from engine.store.store import Store

TOKEN = "gho_storetest_secret_value_123456789"


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url, Keyring({"k1": os.urandom(32)}, "k1"))
    yield s
    await s.close()


async def grant(store: Store, user: str = "u1", **over: Any) -> Any:
    values: dict[str, Any] = dict(
        access_token=TOKEN,
        refresh_token="rt-" + TOKEN,
        id_token=None,
        token_type="Bearer",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        scopes=["a"],
        subject="s",
        user_info={"sub": "s"},
        token_metadata={"instance_url": "https://x"},
        next_refresh_at=None,
    )
    values.update(over)
    return await store.grants.upsert(user, "p", **values)


async def test_secrets_sealed_at_rest(store: Store) -> None:
    """Stored token bytes differ from the plaintext and read back intact."""
    g = await grant(store)
    async with store.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT access_token, refresh_token, user_info FROM grants"))).one()
    assert all(TOKEN.encode() not in bytes(v) for v in raw)
    again = await store.grants.get(g.id)
    assert again is not None and again.access_token == TOKEN and again.user_info == {"sub": "s"}
    assert TOKEN not in repr(again)


async def test_value_copied_to_other_row_fails(store: Store) -> None:
    """An access token blob copied onto another grant's row does not decrypt."""
    a = await grant(store, "u1")
    b = await grant(store, "u2", access_token="other")
    async with store.engine.begin() as conn:
        blob = (
            await conn.execute(sa.text("SELECT access_token FROM grants WHERE id=:i"), {"i": a.id})
        ).scalar()
        await conn.execute(sa.text("UPDATE grants SET access_token=:b WHERE id=:i"), {"b": blob, "i": b.id})
    with pytest.raises(DecryptError):
        await store.grants.get(b.id)


async def test_upsert_keeps_refresh_token(store: Store) -> None:
    """Re-authorizing without a new refresh token keeps the old one and reactivates the grant."""
    g = await grant(store)
    await store.grants.set_status(g.id, "needs_reauth", last_error="invalid_grant")
    again = await grant(store, refresh_token=None, access_token="new")
    assert again.id == g.id and again.status == "active" and again.refresh_token == "rt-" + TOKEN


async def test_update_tokens_compare_and_set(store: Store) -> None:
    """Two writers with the same expected version: exactly one wins."""
    g = await grant(store)

    async def write(n: int) -> Any:
        return await store.grants.update_tokens(
            g.id,
            expected_version=g.version,
            access_token=f"at{n}",
            refresh_token=None,
            expires_at=None,
            scopes=None,
            id_token=None,
            next_refresh_at=None,
        )

    results = await asyncio.gather(*(write(n) for n in range(5)))
    assert sum(r is not None for r in results) == 1


async def test_consume_state_single_use(store: Store) -> None:
    """Concurrent consumers of one state: exactly one gets the flow; an expired state gives none."""
    now = datetime.now(UTC)
    flow = await store.flows.create(
        user_id="u",
        provider_id="p",
        scopes=["a"],
        code_verifier="v" * 50,
        nonce=None,
        redirect_uri="http://x/cb",
        next_uri=None,
        expires_at=now + timedelta(minutes=10),
    )
    await store.flows.set_state(flow.id, "h1", now + timedelta(minutes=10))
    got = await asyncio.gather(*(store.flows.consume_state("h1") for _ in range(8)))
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].code_verifier == "v" * 50
    await store.flows.set_state(flow.id, "h2", now - timedelta(seconds=1))
    assert await store.flows.consume_state("h2") is None


async def test_flow_finish_and_pending_tokens(store: Store) -> None:
    """finish is compare-and-set; held tokens are taken once and cleared."""
    now = datetime.now(UTC)
    flow = await store.flows.create(
        user_id="u",
        provider_id="p",
        scopes=[],
        code_verifier=None,
        nonce="n",
        redirect_uri="http://x/cb",
        next_uri=None,
        expires_at=now + timedelta(minutes=1),
    )
    assert await store.flows.finish(
        flow.id, status="verifying", expected_status="pending", pending_tokens={"access_token": TOKEN}
    )
    assert not await store.flows.finish(flow.id, status="completed", expected_status="pending")
    assert await store.flows.take_pending_tokens(flow.id) == ({"access_token": TOKEN}, None)
    assert await store.flows.take_pending_tokens(flow.id) is None


async def test_expire_and_delete_flows(store: Store) -> None:
    """Expired pending flows are marked expired and old finished flows deleted."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    flow = await store.flows.create(
        user_id="u",
        provider_id="p",
        scopes=[],
        code_verifier="v",
        nonce=None,
        redirect_uri="http://x/cb",
        next_uri=None,
        expires_at=past,
    )
    assert await store.flows.expire_due(datetime.now(UTC)) == [flow.id]
    expired = await store.flows.get(flow.id)
    assert expired is not None and expired.status == "expired" and expired.code_verifier is None
    assert await store.flows.delete_older_than(datetime.now(UTC) + timedelta(seconds=1)) == 1


async def test_leases_exclusive(store: Store) -> None:
    """One owner holds a lease until it is released or expires."""
    results = await asyncio.gather(*(store.leases.acquire("grant:1", f"o{i}", 30) for i in range(6)))
    assert sum(results) == 1
    winner = f"o{results.index(True)}"
    assert await store.leases.renew("grant:1", winner, 30)
    assert not await store.leases.acquire("grant:1", "other", 30)
    await store.leases.release("grant:1", winner)
    assert await store.leases.acquire("grant:1", "other", 0.01)
    await asyncio.sleep(0.05)
    assert await store.leases.acquire("grant:1", "third", 30)


async def test_api_keys(store: Store) -> None:
    """A created key verifies once shown; a wrong secret or a revoked key does not; only hashes are stored."""
    record, plain = await store.api_keys.create("ci")
    assert plain.startswith(f"kt_{record.id}_")
    assert (await store.api_keys.verify(plain)) is not None
    assert await store.api_keys.verify(plain[:-1] + ("A" if plain[-1] != "A" else "B")) is None
    assert await store.api_keys.verify("kt_nope_x") is None
    async with store.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT key_hash FROM api_keys"))).all()
    assert plain.split("_", 2)[2].encode() not in bytes(rows[0][0])
    assert await store.api_keys.revoke("ci")
    assert await store.api_keys.verify(plain) is None
    assert [k.name for k in await store.api_keys.list()] == ["ci"]


async def test_due_and_counts(store: Store) -> None:
    """due() returns active grants whose refresh time has come; counts group by provider and status."""
    now = datetime.now(UTC)
    await grant(store, "a", next_refresh_at=now - timedelta(seconds=5))
    await grant(store, "b", next_refresh_at=now + timedelta(hours=1))
    assert [g.user_id for g in await store.grants.due(now)] == ["a"]
    assert await store.grants.count_by_status() == {("p", "active"): 2}


async def test_meta_salt_stable(store: Store) -> None:
    """The installation salt is created once and then stays the same."""
    assert await store.meta.installation_salt() == await store.meta.installation_salt()


async def test_unknown_key_refused_at_open(db_url: str) -> None:
    """Opening a database with values sealed by a key that is not configured fails naming the key id."""
    s = await Store.open(db_url, Keyring({"old": os.urandom(32)}, "old"))
    await grant(s)
    await s.close()
    with pytest.raises(Exception, match="'old'"):
        await Store.open(db_url, Keyring({"new": os.urandom(32)}, "new"))


async def test_stale_schema_refused(db_url: str) -> None:
    """A database behind the code's migrations is refused with the command to run."""
    from engine.errors import StorageError

    s = await Store.open(db_url, Keyring({"k": os.urandom(32)}, "k"))
    async with s.engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM alembic_version"))
    await s.close()
    with pytest.raises(StorageError, match="keyturn db upgrade"):
        await Store.open(db_url, Keyring({"k": os.urandom(32)}, "k"))


async def test_newer_schema_refused(db_url: str) -> None:
    """A database migrated by a newer Keyturn is refused, not modified."""
    from engine.errors import StorageError

    s = await Store.open(db_url, Keyring({"k": os.urandom(32)}, "k"))
    async with s.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE alembic_version SET version_num='9999'"))
    await s.close()
    with pytest.raises(StorageError, match="newer than this Keyturn"):
        await Store.open(db_url, Keyring({"k": os.urandom(32)}, "k"))
