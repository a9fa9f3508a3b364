"""End to end against panva's oidc-provider: arcadepy drives the handshake; tokens stay fresh."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from arcadepy import AsyncArcade

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e


async def sign_in(engine: Any, url: str, account: str = "alice") -> int:
    """What the user's browser does: open the flow link, sign in at the provider as ``account``, come back."""
    async with engine.browser.get(url, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        provider_url = resp.headers["Location"] + f"&login_hint={account}"
    async with engine.browser.get(provider_url, max_redirects=20) as resp:
        return resp.status


async def connected(keyturn_engine: Any, oidc_op: Any, **op_kw: Any) -> tuple[Any, Any, AsyncArcade]:
    op = await oidc_op(**op_kw)
    engine = await keyturn_engine("")
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    await engine.reconfigure(op.provider_yaml(client_id, client_secret))
    return engine, op, AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)


async def test_arcadepy_handshake_against_oidc_provider(keyturn_engine: Any, oidc_op: Any) -> None:
    """auth.start -> headless sign-in at oidc-provider -> wait_for_completion; the grant is encrypted."""
    engine, _, client = await connected(keyturn_engine, oidc_op)
    try:
        auth = await client.auth.start("alice@example.test", "op", scopes=["email"])
        assert auth.status == "pending" and auth.url
        waiting = asyncio.create_task(client.auth.wait_for_completion(auth))
        assert await sign_in(engine, auth.url) == 200
        done = await asyncio.wait_for(waiting, 30)
        assert done.status == "completed"
        assert set(done.scopes or []) >= {"openid", "email", "offline_access"}
    finally:
        await client.close()
    grant = await engine.store.grants.find("alice@example.test", "op")
    assert grant.subject == "alice" and grant.user_info["email"] == "alice@example.test"
    assert grant.refresh_token and grant.id_token
    for token in (grant.access_token, grant.refresh_token, grant.id_token):
        remember(token)
    async with engine.store.engine.connect() as conn:
        raw = (await conn.execute(sa.text("SELECT access_token, refresh_token, id_token FROM grants"))).one()
    assert grant.access_token.encode() not in raw[0] and grant.refresh_token.encode() not in raw[1]


async def test_incremental_scopes_at_oidc_provider(keyturn_engine: Any, oidc_op: Any) -> None:
    """A second authorization asking for profile keeps email: the provider is asked for the union."""
    engine, _, client = await connected(keyturn_engine, oidc_op)
    try:
        first = await client.auth.start("bob@example.test", "op", scopes=["email"])
        assert await sign_in(engine, first.url or "", "bob") == 200
        second = await client.auth.start("bob@example.test", "op", scopes=["profile"])
        assert second.status == "pending"
        assert {"email", "profile"} <= set(second.scopes or [])
        assert await sign_in(engine, second.url or "", "bob") == 200
        done = await client.auth.status(id=second.id or "", wait=5)
        assert done.status == "completed" and {"email", "profile"} <= set(done.scopes or [])
    finally:
        await client.close()
    grant = await engine.store.grants.find("bob@example.test", "op")
    remember(grant.access_token)
    assert grant.user_info.get("name") == "bob"


async def test_scheduler_refreshes_rotating_tokens(keyturn_engine: Any, oidc_op: Any, tmp_path: Any) -> None:
    """5 s access tokens: the scheduler refreshes before expiry several times; each rotation is persisted."""
    op = await oidc_op(access_ttl=5)
    engine = await keyturn_engine(
        "lifecycle: {refresh_interval: 1s, refresh_lead: 3s, refresh_jitter: 0s}\n", scheduler=True
    )
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    await engine.reconfigure(
        op.provider_yaml(client_id, client_secret)
        + "lifecycle: {refresh_interval: 1s, refresh_lead: 3s, refresh_jitter: 0s}\n"
    )
    body = {
        "user_id": "carol@example.test",
        "auth_requirement": {"id": "op", "oauth2": {"scopes": ["email"]}},
    }
    _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert await sign_in(engine, auth["url"], "carol") == 200
    first = await engine.store.grants.find("carol@example.test", "op")
    seen_refresh_tokens = [first.refresh_token]
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline and len(seen_refresh_tokens) < 4:
        await asyncio.sleep(0.5)
        current = await engine.store.grants.find("carol@example.test", "op")
        assert current.status == "active", current.last_error
        if current.refresh_token != seen_refresh_tokens[-1]:
            seen_refresh_tokens.append(current.refresh_token)
            assert current.expires_at is not None
    for token in seen_refresh_tokens:
        remember(token)
    assert len(seen_refresh_tokens) >= 3, "expected several rotations"
    current = await engine.store.grants.find("carol@example.test", "op")
    remember(current.access_token)
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    async with aiohttp.ClientSession() as session:
        # the stored one is the live one: introspection says active
        async with session.post(
            op.issuer + "/token/introspection",
            headers={"Authorization": f"Basic {basic}"},
            data={"token": current.refresh_token},
        ) as r:
            assert (await r.json())["active"] is True
        # the previous refresh token was rotated away: replaying it is rejected by the provider
        # (which then revokes the whole chain: reuse detection)
        async with session.post(
            op.issuer + "/token",
            headers={"Authorization": f"Basic {basic}"},
            data={"grant_type": "refresh_token", "refresh_token": seen_refresh_tokens[-2]},
        ) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_grant"


async def test_user_revoked_app_needs_reauth(keyturn_engine: Any, oidc_op: Any) -> None:
    """When the user removes the app at the provider, the next refresh marks the grant needs_reauth."""
    engine, op, client = await connected(keyturn_engine, oidc_op)
    await client.close()
    body = {"user_id": "dave@example.test", "auth_requirement": {"id": "op", "oauth2": {"scopes": ["email"]}}}
    _, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert await sign_in(engine, auth["url"], "dave") == 200
    grant = await engine.store.grants.find("dave@example.test", "op")
    remember(grant.access_token)
    remember(grant.refresh_token)
    await op.revoke_account("dave")
    from engine.wiring.services import REFRESHER

    result = await engine.app[REFRESHER].refresh(grant.id, force=True)
    assert result.outcome == "needs_reauth"
    _, page = await engine.api("GET", "/v1/admin/user_connections?user_id=dave@example.test")
    assert page["items"][0]["connection_status"] == "needs_reauth"


async def test_design_style_custom_block_with_issuer(keyturn_engine: Any, oidc_op: Any) -> None:
    """A custom block written as DESIGN.md shows (endpoints plus issuer, no discovery key) completes."""
    op = await oidc_op()
    engine = await keyturn_engine("")
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    async with (
        aiohttp.ClientSession() as session,
        session.get(op.issuer + "/.well-known/openid-configuration") as resp,
    ):
        meta = await resp.json()
    await engine.reconfigure(f"""
auth:
  providers:
    - id: custom-oauth-provider
      enabled: true
      type: oauth2
      client_id: {client_id}
      client_secret: {client_secret}
      oauth2:
        scope_delimiter: " "
        pkce: {{enabled: true, code_challenge_method: S256}}
        authorization_request:
          endpoint: "{meta["authorization_endpoint"]}"
          params: {{response_type: code, prompt: consent}}
        token_request:
          endpoint: "{meta["token_endpoint"]}"
          auth_method: client_secret_basic
          params: {{grant_type: authorization_code}}
        refresh_request: {{endpoint: "{meta["token_endpoint"]}"}}
        user_info: {{endpoint: "{meta["userinfo_endpoint"]}"}}
        issuer: "{op.issuer}"
""")
    body = {
        "user_id": "erin@example.test",
        "auth_requirement": {"id": "custom-oauth-provider", "oauth2": {"scopes": ["openid", "email"]}},
    }
    status, auth = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200, auth
    assert await sign_in(engine, auth["url"], "erin") == 200
    _, done = await engine.api("GET", f"/v1/auth/status?id={auth['id']}&wait=5")
    assert done["status"] == "completed", done
    grant = await engine.store.grants.find("erin@example.test", "custom-oauth-provider")
    remember(grant.access_token)
    assert grant.subject == "erin" and grant.id_token
