"""engine.lifecycle.scheduler: the reaper and grants without expiry (max_token_age)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.wiring.services import LIFECYCLE
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


async def test_reaper_expires_deletes_and_retries(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """Expired flows are marked, old ones deleted, long-dead grants removed, pending revocations retried."""
    engine = await keyturn_engine(
        acme_config(mini_provider, extra="lifecycle: {flow_retention: 1h, grant_retention: 1d}")
    )
    store = engine.store
    past = datetime.now(UTC) - timedelta(minutes=1)
    stale = await store.flows.create(
        user_id="u",
        provider_id="acme",
        scopes=[],
        code_verifier="v",
        nonce=None,
        redirect_uri="http://x/cb",
        next_uri=None,
        expires_at=past,
    )
    old = await store.flows.create(
        user_id="u",
        provider_id="acme",
        scopes=[],
        code_verifier="v",
        nonce=None,
        redirect_uri="http://x/cb",
        next_uri=None,
        expires_at=past,
    )
    await store.flows.finish(old.id, status="failed", expected_status="pending", error="x")
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE flows SET created_at = :t WHERE id = :i"),
            {"t": datetime.now(UTC) - timedelta(days=2), "i": old.id},
        )
    token = mini_provider._token()
    dead = await store.grants.upsert(
        "old-user",
        "acme",
        access_token=token,
        refresh_token=None,
        id_token=None,
        token_type="Bearer",
        expires_at=None,
        scopes=[],
        subject=None,
        user_info=None,
        token_metadata={},
        next_refresh_at=None,
    )
    await store.grants.set_status(dead.id, "needs_reauth")
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE grants SET updated_at = :t WHERE id = :i"),
            {"t": datetime.now(UTC) - timedelta(days=3), "i": dead.id},
        )
    pending_revoke = await store.grants.upsert(
        USER,
        "acme",
        access_token=mini_provider._token(),
        refresh_token=None,
        id_token=None,
        token_type="Bearer",
        expires_at=None,
        scopes=[],
        subject=None,
        user_info=None,
        token_metadata={},
        next_refresh_at=None,
    )
    await store.grants.set_status(pending_revoke.id, "revoked")
    counts = await engine.app[LIFECYCLE].reap()
    assert counts["flows_expired"] == 1 and counts["flows_deleted"] == 1
    assert (await store.flows.get(stale.id)).status == "expired"
    assert await store.flows.get(old.id) is None
    assert await store.grants.get(dead.id) is None
    assert (
        await store.grants.get(pending_revoke.id) is None
    )  # revocation retried at the provider, then deleted
    assert len(mini_provider.revocations) == 1


async def test_grant_without_expiry_refreshes_at_max_token_age(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """A token answer without expires_in schedules the refresh at lifecycle.max_token_age."""
    engine = await keyturn_engine(acme_config(mini_provider, extra="lifecycle: {max_token_age: 2h}"))
    mini_provider.expires_in = 0  # the provider says nothing about expiry
    _, auth = await engine.api(
        "POST",
        "/v1/auth/authorize",
        json={"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}},
    )
    async with engine.browser.get(auth["url"]) as resp:
        assert resp.status == 200
    grant = await engine.store.grants.find(USER, "acme")
    assert grant.expires_at is None and grant.refresh_token
    delta = grant.next_refresh_at - datetime.now(UTC)
    assert timedelta(minutes=115) < delta <= timedelta(hours=2)


async def test_one_failing_revocation_retry_does_not_stop_the_others(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """Two pending revocations, the first retry raises: it is logged and the second is still revoked."""
    engine = await keyturn_engine(acme_config(mini_provider))
    store = engine.store
    ids = []
    for user in ("first-user", "second-user"):
        grant = await store.grants.upsert(
            user,
            "acme",
            access_token=mini_provider._token(),
            refresh_token=None,
            id_token=None,
            token_type="Bearer",
            expires_at=None,
            scopes=[],
            subject=None,
            user_info=None,
            token_metadata={},
            next_refresh_at=None,
        )
        await store.grants.set_status(grant.id, "revoked")
        ids.append(grant.id)
    lifecycle = engine.app[LIFECYCLE]
    real_retry = lifecycle.retry_revocation
    assert real_retry is not None

    async def retry(grant_id: str) -> bool:  # the first provider call fails with an unexpected error
        if grant_id == ids[0]:
            raise RuntimeError("provider client blew up")
        return await real_retry(grant_id)

    lifecycle.retry_revocation = retry
    counts = await lifecycle.reap()
    assert counts["revocation_errors"] == 1 and "grants_deleted" in counts
    assert (await store.grants.get(ids[0])).status == "revoked"  # kept for the next pass
    assert await store.grants.get(ids[1]) is None and len(mini_provider.revocations) == 1


async def test_reaper_deletes_expired_sessions_and_sign_ins(keyturn_engine: Any) -> None:
    """The reaper removes sessions past their expiry and sign-ins never finished; live ones stay."""
    engine = await keyturn_engine("")
    store = engine.store
    past = datetime.now(UTC) - timedelta(seconds=1)
    live, _ = await store.sessions.create("alice@example.test", 3600)
    dead, _ = await store.sessions.create("bob@example.test", 3600)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.text("UPDATE sessions SET expires_at = :t WHERE user_id = 'bob@example.test'"), {"t": past}
        )
    await store.logins.create(state="s", code_verifier="v", nonce="n", next_path="/", expires_at=past)
    counts = await engine.app[LIFECYCLE].reap()
    assert counts["sessions_deleted"] == 1 and counts["logins_deleted"] == 1
    assert [s.user_id for s in await store.sessions.list()] == ["alice@example.test"]
    assert await store.sessions.lookup(live) is not None and await store.sessions.lookup(dead) is None


async def test_reaper_deletes_mcp_codes_and_tokens_a_day_past_expiry(keyturn_engine: Any) -> None:
    """The reaper removes MCP authorization codes and tokens a day past expiry; recent ones stay."""
    engine = await keyturn_engine("")
    store = engine.store
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=2), now - timedelta(hours=1)
    async with store.engine.begin() as conn:
        for name, expires in (("old", old), ("recent", recent)):
            await conn.execute(
                sa.text(
                    "INSERT INTO mcp_codes (code_hash, client_id, user_id, redirect_uri, resource, scope,"
                    " code_challenge, expires_at) VALUES (:h, 'c', 'u', 'r', 'res', 's', 'ch', :t)"
                ),
                {"h": name, "t": expires},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO mcp_tokens (id, token_hash, kind, family_id, client_id, user_id, resource,"
                    " scope, created_at, expires_at)"
                    " VALUES (:h, :h, 'access', 'f', 'c', 'u', 'res', 's', :t, :t)"
                ),
                {"h": name, "t": expires},
            )
    counts = await engine.app[LIFECYCLE].reap()
    assert counts["mcp_oauth_deleted"] == 2
    async with store.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT code_hash FROM mcp_codes"))).scalars().all() == ["recent"]
        assert (await conn.execute(sa.text("SELECT id FROM mcp_tokens"))).scalars().all() == ["recent"]


async def test_reaper_deletes_approvals_expired_past_flow_retention(keyturn_engine: Any) -> None:
    """Held tool calls expired longer ago than lifecycle.flow_retention are deleted; recent ones stay."""
    engine = await keyturn_engine("lifecycle: {flow_retention: 1h}\n")
    store = engine.store
    values = {"user_id": "ann", "tool_name": "Gmail.SendEmail", "caller": "app", "approver": "app"}
    old = await store.approvals.create(digest="a" * 64, inputs={}, ttl=60, **values)
    recent = await store.approvals.create(digest="b" * 64, inputs={}, ttl=60, **values)
    async with store.engine.begin() as conn:
        for aid, age in ((old.id, timedelta(hours=2)), (recent.id, timedelta(minutes=5))):
            await conn.execute(
                sa.text("UPDATE approvals SET expires_at = :t WHERE id = :id"),
                {"t": datetime.now(UTC) - age, "id": aid},
            )
    counts = await engine.app[LIFECYCLE].reap()
    assert counts["approvals_deleted"] == 1
    assert await store.approvals.get(old.id) is None and await store.approvals.get(recent.id) is not None
