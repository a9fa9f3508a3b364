"""engine.store.grants on SQLite and PostgreSQL: sealed tokens, upsert, version-checked writes, queries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine.store.grants import default_ids
from engine.store.store import Store
from tests.plugins.store import STORE_REFRESH, STORE_TOKEN, database_errors, store_grant


async def raw(store: Store, sql: str, **params: Any) -> Any:
    async with store.engine.connect() as conn:
        return (await conn.execute(sa.text(sql), params)).one()


async def write_raw(store: Store, sql: str, **params: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(sa.text(sql), params)


async def test_secrets_sealed_at_rest(store_opened: Store) -> None:
    """Stored token, id token and user info bytes differ from the plaintext and read back intact."""
    g = await store_grant(store_opened, id_token="idtok-" + STORE_TOKEN, user_info={"email": "ann@x.example"})
    row = await raw(store_opened, "SELECT access_token, refresh_token, id_token, user_info FROM grants")
    assert all(v is not None and STORE_TOKEN.encode() not in bytes(v) for v in row)
    assert b"ann@x.example" not in bytes(row.user_info)
    again = await store_opened.grants.get(g.id)
    assert again is not None and again.access_token == STORE_TOKEN and again.refresh_token == STORE_REFRESH
    assert again.id_token == "idtok-" + STORE_TOKEN and again.user_info == {"email": "ann@x.example"}
    assert g.id.startswith("gr_") and len(g.id) == 3 + 22


async def corrupt(store: Store, grant_id: str, how: str, *, other: str | None = None) -> None:
    """Spoil a sealed value: ``copied`` from another row, ``column`` swapped, or a ``flipped`` byte."""
    if how == "copied":
        assert other is not None
        blob = (await raw(store, "SELECT access_token FROM grants WHERE id=:i", i=other))[0]
        await write_raw(store, "UPDATE grants SET access_token=:b WHERE id=:i", b=blob, i=grant_id)
    elif how == "column":
        await write_raw(store, "UPDATE grants SET access_token=refresh_token WHERE id=:i", i=grant_id)
    else:
        blob = bytearray((await raw(store, "SELECT access_token FROM grants WHERE id=:i", i=grant_id))[0])
        blob[-1] ^= 0x01
        await write_raw(store, "UPDATE grants SET access_token=:b WHERE id=:i", b=bytes(blob), i=grant_id)


@pytest.mark.parametrize("how", ["copied", "column", "flipped"])
async def test_spoiled_value_reads_as_unreadable(store_opened: Store, how: str) -> None:
    """A value copied from another row or column, or a flipped byte: status unreadable, no token."""
    a = await store_grant(store_opened, "u1")
    b = await store_grant(store_opened, "u2", access_token="other")
    await corrupt(store_opened, b.id, how, other=a.id)
    bad = await store_opened.grants.get(b.id)
    assert bad is not None and bad.status == "unreadable" and bad.last_error == "decrypt_failed"
    assert bad.access_token == "" and bad.refresh_token is None and bad.user_info is None
    assert bad.user_id == "u2" and bad.provider_id == "p"
    good = await store_opened.grants.get(a.id)
    assert good is not None and good.status == "active" and good.access_token == STORE_TOKEN


async def test_one_unreadable_row_does_not_stop_the_others(store_opened: Store) -> None:
    """With one spoiled row, list, find and due still return every other grant; the bad one is marked once."""
    past = datetime.now(UTC) - timedelta(minutes=1)
    grants = [await store_grant(store_opened, f"u{i}", next_refresh_at=past) for i in range(3)]
    await corrupt(store_opened, grants[1].id, "flipped")
    seen: list[str] = []
    store_opened.on_unreadable = lambda g: seen.append(g.id)
    listed = await store_opened.grants.list()
    assert [g.status for g in listed] == ["active", "unreadable", "active"]
    assert seen == [grants[1].id]  # audited once: the row is now marked in the database
    assert (await raw(store_opened, "SELECT status FROM grants WHERE id=:i", i=grants[1].id))[
        0
    ] == "unreadable"
    due = await store_opened.grants.due(datetime.now(UTC))
    assert sorted(g.id for g in due) == sorted([grants[0].id, grants[2].id])
    assert (await store_opened.grants.find("u1", "p")).status == "unreadable"
    assert (await store_opened.grants.find("u2", "p")).access_token == STORE_TOKEN
    assert seen == [grants[1].id]
    assert await store_opened.grants.count_by_status() == {("p", "active"): 2, ("p", "unreadable"): 1}
    assert await store_opened.grants.delete(grants[1].id)
    assert len(await store_opened.grants.list()) == 2


async def test_authorizing_again_repairs_an_unreadable_grant(store_opened: Store) -> None:
    """A new flow's tokens replace every spoiled value, refresh token included; the grant is active."""
    g = await store_grant(store_opened, "u1")
    await write_raw(store_opened, "UPDATE grants SET refresh_token=access_token WHERE id=:i", i=g.id)
    assert (await store_opened.grants.get(g.id)).status == "unreadable"
    again = await store_grant(store_opened, "u1", access_token="fresh", refresh_token=None)
    assert again.id == g.id and again.status == "active" and again.access_token == "fresh"
    assert again.refresh_token is None  # the spoiled one is gone, not kept


async def test_same_token_encrypts_differently(store_opened: Store) -> None:
    """The same token stored for two users gives two different ciphertexts."""
    await store_grant(store_opened, "u1")
    await store_grant(store_opened, "u2")
    async with store_opened.engine.connect() as conn:
        blobs = [bytes(r[0]) for r in await conn.execute(sa.text("SELECT access_token FROM grants"))]
    assert len(set(blobs)) == 2


async def test_upsert_keeps_refresh_token(store_opened: Store) -> None:
    """Re-authorizing without a new refresh token keeps the old one, reactivates and resets failures."""
    g = await store_grant(store_opened)
    await store_opened.grants.record_failure(g.id, error="server_error", next_refresh_at=datetime.now(UTC))
    await store_opened.grants.set_status(g.id, "needs_reauth", last_error="invalid_grant")
    again = await store_grant(store_opened, refresh_token=None, access_token="new")
    assert again.id == g.id and again.status == "active" and again.refresh_token == STORE_REFRESH
    assert again.refresh_failures == 0 and again.last_error is None and again.version > g.version
    assert again.access_token == "new"


async def test_concurrent_upserts_make_one_grant(store_opened: Store) -> None:
    """Concurrent upserts for one user and provider leave one grant, each write counted, no key error."""
    with database_errors(store_opened) as errors:
        await asyncio.gather(*(store_grant(store_opened, access_token=f"at{i}") for i in range(8)))
    assert errors == []
    (grant,) = await store_opened.grants.list(user_id="u1")
    assert grant.version == 8 and grant.access_token in {f"at{i}" for i in range(8)}


async def test_update_tokens_compare_and_set(store_opened: Store) -> None:
    """Concurrent update_tokens with the same expected version: exactly one wins, the rest get None."""
    g = await store_grant(store_opened)

    async def write(n: int) -> Any:
        return await store_opened.grants.update_tokens(
            g.id,
            expected_version=g.version,
            access_token=f"at{n}",
            refresh_token=None,
            expires_at=None,
            scopes=None,
            id_token=None,
            next_refresh_at=None,
        )

    results = await asyncio.gather(*(write(n) for n in range(8)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1 and winners[0].version == g.version + 1
    stored = await store_opened.grants.get(g.id)
    assert stored is not None and stored.access_token == winners[0].access_token
    assert stored.refresh_token == STORE_REFRESH and stored.refreshed_at is not None


async def test_update_tokens_rotates_refresh_token(store_opened: Store) -> None:
    """A new refresh token, scopes and id token replace the old ones in the same write."""
    g = await store_grant(store_opened)
    later = datetime.now(UTC) + timedelta(hours=2)
    new = await store_opened.grants.update_tokens(
        g.id,
        expected_version=g.version,
        access_token="at2",
        refresh_token="rt2",
        expires_at=later,
        scopes=["a", "b"],
        id_token="id2",
        next_refresh_at=later - timedelta(minutes=5),
    )
    assert new is not None and (new.refresh_token, new.scopes, new.id_token) == ("rt2", ("a", "b"), "id2")
    assert new.expires_at == later and new.expires_at.tzinfo is not None


async def test_status_failure_and_due(store_opened: Store) -> None:
    """due() lists active grants whose refresh time has come; set_status takes a grant out of it."""
    now = datetime.now(UTC)
    a = await store_grant(store_opened, "a", next_refresh_at=now - timedelta(seconds=5))
    await store_grant(store_opened, "b", next_refresh_at=now + timedelta(hours=1))
    assert [g.user_id for g in await store_opened.grants.due(now, 10)] == ["a"]
    await store_opened.grants.record_failure(
        a.id, error="timeout", next_refresh_at=now + timedelta(minutes=1)
    )
    failed = await store_opened.grants.get(a.id)
    assert failed is not None and failed.refresh_failures == 1 and failed.last_error == "timeout"
    assert await store_opened.grants.due(now, 10) == []
    assert await store_opened.grants.set_status(a.id, "revoked")
    assert [g.user_id for g in await store_opened.grants.due(now + timedelta(hours=2), 10)] == ["b"]


async def test_list_counts_and_deletes(store_opened: Store) -> None:
    """list filters, count_by_status groups, delete and delete_revoked_before remove rows."""
    a = await store_grant(store_opened, "a", "gh")
    b = await store_grant(store_opened, "b", "gh")
    await store_grant(store_opened, "a", "gl")
    await store_opened.grants.set_status(b.id, "revoked")
    assert {g.provider_id for g in await store_opened.grants.list(user_id="a")} == {"gh", "gl"}
    assert [g.user_id for g in await store_opened.grants.list(status="revoked")] == ["b"]
    assert await store_opened.grants.count_by_status() == {
        ("gh", "active"): 1,
        ("gh", "revoked"): 1,
        ("gl", "active"): 1,
    }
    assert await store_opened.grants.delete_revoked_before(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert await store_opened.grants.delete(a.id)
    assert not await store_opened.grants.delete(a.id)
    assert await store_opened.grants.find("a", "gh") is None
    assert (await store_opened.grants.find("a", "gl")) is not None


async def test_list_by_user_folds_case_for_emails(store_opened: Store) -> None:
    """list with casefold finds Alice@Example.test's grant for alice@example.test; without, exactly."""
    await store_grant(store_opened, "Alice@Example.test")
    assert len(await store_opened.grants.list(user_id="alice@example.test", casefold=True)) == 1
    assert await store_opened.grants.list(user_id="alice@example.test") == []


async def test_accounts_of_one_user_and_the_default(store_opened: Store) -> None:
    """Two accounts are two grants; without an account find gives the first connected, until one is
    chosen with set_default (which un-chooses the other)."""
    work = await store_grant(store_opened, account="work", subject="w")
    personal = await store_grant(store_opened, account="personal", subject="p")
    assert work.id != personal.id and (work.account, personal.account) == ("work", "personal")
    assert (await store_opened.grants.find("u1", "p")).id == work.id
    assert (await store_opened.grants.find("u1", "p", "personal")).id == personal.id
    assert await store_opened.grants.find("u1", "p", "other") is None
    assert default_ids(await store_opened.grants.list(user_id="u1")) == {work.id}
    await store_opened.grants.set_default(personal.id)
    assert (await store_opened.grants.find("u1", "p")).id == personal.id
    await store_opened.grants.set_default(work.id)
    listed = {g.id: g.is_default for g in await store_opened.grants.list(user_id="u1")}
    assert listed == {work.id: True, personal.id: False}
    assert await store_opened.grants.set_default("gr_missing") is None


async def test_a_new_flow_repairs_a_needs_reauth_account_in_place(store_opened: Store) -> None:
    """Authorizing an account again whose grant needs re-authorization makes that grant active: same id
    and created_at, a higher version, and the user's other account untouched."""
    work = await store_grant(store_opened, account="work")
    other = await store_grant(store_opened, account="home")
    await store_opened.grants.set_status(work.id, "needs_reauth", last_error="invalid_grant")
    again = await store_grant(store_opened, account="work", access_token=STORE_TOKEN + "-2")
    assert again.id == work.id and again.created_at == work.created_at and again.status == "active"
    assert again.version > work.version + 1 and again.access_token == STORE_TOKEN + "-2"
    assert again.last_error is None
    assert len(await store_opened.grants.list(user_id="u1")) == 2
    assert (await store_opened.grants.get(other.id)).version == other.version
