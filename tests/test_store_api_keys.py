"""engine.store.api_keys on SQLite and PostgreSQL: shown once, stored as salted hashes, verify and revoke."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from engine.errors import Conflict
from engine.store.store import Store
from tests.plugins.store import database_errors


async def test_create_and_verify(store_opened: Store) -> None:
    """A created key has the kt_<id>_<secret> form and verifies; only a salted hash is stored."""
    record, plain = await store_opened.api_keys.create("ci")
    prefix, key_id, secret = plain.split("_", 2)
    assert (prefix, key_id) == ("kt", record.id) and len(secret) >= 43  # 32 random bytes, url-safe
    assert (await store_opened.api_keys.verify(plain)) == (await store_opened.api_keys.list())[0]
    async with store_opened.engine.connect() as conn:
        row = (await conn.execute(sa.text("SELECT salt, key_hash FROM api_keys"))).one()
    assert secret.encode() not in bytes(row.key_hash) and len(bytes(row.salt)) >= 16
    assert record.name == "ci" and "secret" not in repr(record).lower()


async def test_wrong_keys_refused(store_opened: Store) -> None:
    """A changed secret, an unknown id and malformed strings do not verify."""
    _, plain = await store_opened.api_keys.create("ci")
    flipped = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    for presented in (flipped, f"kt_nope_{plain.split('_', 2)[2]}", "kt__x", "", "Bearer x", plain + "x"):
        assert await store_opened.api_keys.verify(presented) is None


async def test_revoke(store_opened: Store) -> None:
    """A revoked key stops verifying at once; revoking twice reports nothing to revoke; list keeps it."""
    record, plain = await store_opened.api_keys.create("ci")
    assert await store_opened.api_keys.verify(plain) is not None
    assert await store_opened.api_keys.revoke(record.id)
    assert await store_opened.api_keys.verify(plain) is None
    assert not await store_opened.api_keys.revoke("ci")
    [listed] = await store_opened.api_keys.list()
    assert listed.revoked_at is not None


async def test_last_used_touched_once_a_minute(store_opened: Store) -> None:
    """verify records last_used_at, but not again within a minute."""
    record, plain = await store_opened.api_keys.create("ci")
    assert record.last_used_at is None
    first = await store_opened.api_keys.verify(plain)
    second = await store_opened.api_keys.verify(plain)
    assert first is not None and second is not None and first.last_used_at is not None
    assert second.last_used_at == first.last_used_at
    assert first.last_used_at > datetime.now(UTC) - timedelta(minutes=1)


async def test_duplicate_name_refused(store_opened: Store) -> None:
    """A second key with the same name is a Conflict naming it; blank names are refused."""
    await store_opened.api_keys.create("ci")
    with pytest.raises(Conflict, match="'ci'"):
        await store_opened.api_keys.create("ci")
    with pytest.raises(Conflict):
        await store_opened.api_keys.create("  ")


async def test_racing_creates_of_one_name(store_opened: Store) -> None:
    """Creating one name at once from many callers makes one key; the rest get a Conflict, no key error."""
    with database_errors(store_opened) as errors:
        got = await asyncio.gather(
            *(store_opened.api_keys.create("dup") for _ in range(6)), return_exceptions=True
        )
    assert errors == []
    assert sum(isinstance(g, tuple) for g in got) == 1 and sum(isinstance(g, Conflict) for g in got) == 5


async def test_known_only_costs_no_query_per_made_up_key(store_opened: Store) -> None:
    """known_only: 200 made-up key ids cost one id-list query in all; a real key still verifies."""
    from sqlalchemy import event

    _, plain = await store_opened.api_keys.create("ci")
    queries: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        queries.append(statement)

    sync_engine = store_opened.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", count)
    try:
        for i in range(200):
            assert await store_opened.api_keys.verify(f"kt_made{i:03d}up_secret", known_only=True) is None
        assert len(queries) <= 1, queries
        assert await store_opened.api_keys.verify(plain, known_only=True) is not None
    finally:
        event.remove(sync_engine, "before_cursor_execute", count)


async def test_known_only_sees_a_new_key(store_opened: Store) -> None:
    """A key created after the id list was read verifies with known_only once the list is re-read."""
    from engine.store import api_keys

    assert await store_opened.api_keys.verify("kt_nothere_x", known_only=True) is None
    _, plain = await store_opened.api_keys.create("late")
    store_opened.api_keys._known = (store_opened.api_keys._known[0] - api_keys.KNOWN_IDS_TTL, frozenset())
    assert await store_opened.api_keys.verify(plain, known_only=True) is not None


async def test_tool_globs_stored_and_returned(store_opened: Store) -> None:
    """A key created with tool globs verifies with them; one without is unlimited; no globs is refused."""
    limited, plain = await store_opened.api_keys.create("mailer", tools=["Gmail.*", " *.Delete* "])
    assert limited.tools == ("Gmail.*", "*.Delete*")
    verified = await store_opened.api_keys.verify(plain)
    assert verified is not None and verified.tools == ("Gmail.*", "*.Delete*")
    _, other = await store_opened.api_keys.create("all")
    unlimited = await store_opened.api_keys.verify(other)
    assert unlimited is not None and unlimited.tools is None
    assert {k.name: k.tools for k in await store_opened.api_keys.list()} == {
        "mailer": ("Gmail.*", "*.Delete*"),
        "all": None,
    }
    for bad in ([], [""]):
        with pytest.raises(Conflict):
            await store_opened.api_keys.create("bad", tools=bad)
