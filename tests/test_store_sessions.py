"""engine.store.sessions on SQLite and PostgreSQL: hashed session ids, expiry, revocation, sign-ins."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from engine.store.sessions import TOUCH_EVERY, token_hash
from engine.store.store import Store


async def test_only_the_hash_of_a_session_id_is_stored(store_opened: Store) -> None:
    """create gives a 256-bit random value; the row holds its SHA-256, the user, expiry and last use."""
    token, record = await store_opened.sessions.create("alice@example.test", 3600)
    assert len(token) >= 43 and record.id.startswith("se_")
    async with store_opened.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT * FROM sessions"))).one()._mapping
    assert set(row) == {"id", "token_hash", "user_id", "created_at", "expires_at", "last_used_at"}
    assert row["token_hash"] == token_hash(token) and token not in str(dict(row))
    found = await store_opened.sessions.lookup(token)
    assert found is not None and found.user_id == "alice@example.test"
    assert await store_opened.sessions.lookup(token + "x") is None


async def test_expired_session_is_not_found_and_reaped(store_opened: Store) -> None:
    """A session past its expiry is not found; delete_expired removes it and keeps live ones."""
    old, _ = await store_opened.sessions.create("a", 3600)
    live, _ = await store_opened.sessions.create("b", 3600)
    async with store_opened.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE sessions SET expires_at = :t WHERE token_hash = :h"),
            {"t": datetime.now(UTC) - timedelta(seconds=1), "h": token_hash(old)},
        )
    assert await store_opened.sessions.lookup(old) is None
    assert await store_opened.sessions.delete_expired(datetime.now(UTC)) == 1
    assert [s.user_id for s in await store_opened.sessions.list()] == ["b"]
    assert await store_opened.sessions.lookup(live) is not None


async def test_last_use_is_written_at_most_once_a_minute(store_opened: Store) -> None:
    """lookup moves last_used_at only when the previous use is older than TOUCH_EVERY."""
    token, created = await store_opened.sessions.create("a", 3600)
    assert (await store_opened.sessions.lookup(token)).last_used_at == created.last_used_at  # type: ignore[union-attr]
    earlier = datetime.now(UTC) - TOUCH_EVERY - timedelta(seconds=1)
    async with store_opened.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE sessions SET last_used_at = :t"), {"t": earlier})
    touched = await store_opened.sessions.lookup(token)
    assert touched is not None and touched.last_used_at > earlier + timedelta(seconds=30)


async def test_revoke_by_user_and_by_id(store_opened: Store) -> None:
    """revoke ends every session of a user, or one by id; the ids are returned."""
    t1, s1 = await store_opened.sessions.create("a", 3600)
    t2, _ = await store_opened.sessions.create("a", 3600)
    t3, s3 = await store_opened.sessions.create("b", 3600)
    assert await store_opened.sessions.revoke(session_id=s3.id) == [s3.id]
    assert len(await store_opened.sessions.revoke(user_id="a")) == 2
    assert all([await store_opened.sessions.lookup(t) is None for t in (t1, t2, t3)])
    assert (await store_opened.sessions.delete_token(t1)) is None and s1.user_id == "a"


async def test_sign_in_is_single_use_and_sealed(store_opened: Store) -> None:
    """A sign-in is taken once by its state (concurrently too); verifier and nonce are encrypted."""
    soon = datetime.now(UTC) + timedelta(minutes=10)
    await store_opened.logins.create(
        state="st-1",
        code_verifier="verifier-" + "v" * 40,
        nonce="nonce-xyz",
        next_path="/connections",
        expires_at=soon,
    )
    async with store_opened.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT state_hash, code_verifier, nonce FROM logins"))).one()
    assert (
        row[0] == token_hash("st-1")
        and b"verifier-" not in bytes(row[1])
        and b"nonce-xyz" not in bytes(row[2])
    )
    got = await asyncio.gather(*(store_opened.logins.consume("st-1") for _ in range(4)))
    winners = [g for g in got if g is not None]
    assert len(winners) == 1 and winners[0].code_verifier == "verifier-" + "v" * 40
    assert winners[0].nonce == "nonce-xyz" and winners[0].next_path == "/connections"
    assert await store_opened.logins.consume("st-1") is None


async def test_expired_sign_in_is_refused_and_reaped(store_opened: Store) -> None:
    """A sign-in past its expiry is not handed out; delete_expired removes leftovers."""
    past = datetime.now(UTC) - timedelta(seconds=1)
    await store_opened.logins.create(state="a", code_verifier="v", nonce="n", next_path="/", expires_at=past)
    await store_opened.logins.create(state="b", code_verifier="v", nonce="n", next_path="/", expires_at=past)
    assert await store_opened.logins.consume("a") is None
    assert await store_opened.logins.delete_expired(datetime.now(UTC)) == 1
