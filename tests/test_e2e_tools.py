"""End to end: the seed's arcadepy tool calls against Keyturn, the reference worker and oidc-provider."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import aiohttp
import pytest
from arcadepy import AsyncArcade

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.oidc import follow_login
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e


async def test_tools_authorize_wait_execute(keyturn_engine: Any, oidc_op: Any, echo_worker: Any) -> None:
    """tools.authorize, sign-in, wait_for_completion, then tools.execute uses U's token; V gets a url."""
    op = await oidc_op()
    worker = await echo_worker(op.issuer + "/me")
    engine = await keyturn_engine(worker.yaml())
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    await engine.reconfigure(op.provider_yaml(client_id, client_secret, id="acme") + worker.yaml())
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)
    try:
        auth = await client.tools.authorize(tool_name="Echo.WhoAmI", user_id="ulla@example.test")
        assert auth.status == "pending" and auth.url
        async with engine.browser.get(auth.url, allow_redirects=False) as resp:
            provider_url = resp.headers["Location"] + "&login_hint=ulla"
        async with engine.browser.get(provider_url, max_redirects=20) as resp:
            assert resp.status == 200
        done = await asyncio.wait_for(client.auth.wait_for_completion(auth), 30)
        assert done.status == "completed"
        page = await client.tools.list(toolkit="Echo", user_id="ulla@example.test")
        who = next(t for t in page.items if t.name == "WhoAmI")
        assert who.requirements and who.requirements.authorization
        assert who.requirements.authorization.token_status == "completed"
        result = await client.tools.execute(tool_name="Echo.WhoAmI", input={}, user_id="ulla@example.test")
        assert result.success, result
        assert result.output and isinstance(result.output.value, dict)
        assert result.output.value["sub"] == "ulla"  # the provider's userinfo accepted the token the tool saw
        other = await client.tools.execute(tool_name="Echo.WhoAmI", input={}, user_id="vic@example.test")
        assert other.success is False and other.output and other.output.authorization
        assert other.output.authorization.url and other.output.authorization.user_id == "vic@example.test"
        started = await client.auth.start("vic@example.test", "acme", scopes=["email"])
        assert started.status == "pending"
    finally:
        await client.close()
    grant = await engine.store.grants.find("ulla@example.test", "acme")
    remember(grant.access_token)
    assert await engine.store.grants.find("vic@example.test", "acme") is None


async def test_two_accounts_of_one_user_each_tool_call_gets_its_accounts_token(
    keyturn_engine: Any, oidc_op: Any, echo_worker: Any
) -> None:
    """Accounts work (sub ulla) and personal (sub vic) of one user: both listed; execute without an
    account uses the default (the first connected, then the chosen one), with one the named one."""
    op = await oidc_op()
    worker = await echo_worker(op.issuer + "/me")
    engine = await keyturn_engine(worker.yaml())
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    await engine.reconfigure(op.provider_yaml(client_id, client_secret, id="acme") + worker.yaml())
    client = AsyncArcade(base_url=engine.url, api_key=API_KEY, max_retries=0)
    user = "wendy@example.test"

    async def connect(account: str, login: str) -> None:
        auth = await client.tools.authorize(
            tool_name="Echo.WhoAmI", user_id=user, extra_body={"account": account}
        )
        assert auth.status == "pending" and auth.url
        async with engine.browser.get(auth.url, allow_redirects=False) as resp:
            provider_url = resp.headers["Location"]
        async with aiohttp.ClientSession() as fresh:  # another browser: no provider session yet
            callback = await follow_login(fresh, provider_url, account=login)
            async with fresh.get(callback) as resp:
                assert resp.status == 200
        done = await asyncio.wait_for(client.auth.wait_for_completion(auth), 30)
        assert done.status == "completed"

    async def who(**extra: Any) -> dict[str, Any]:
        result = await client.tools.execute(tool_name="Echo.WhoAmI", input={}, user_id=user, **extra)
        assert result.success, result
        assert result.output and isinstance(result.output.value, dict)
        return result.output.value

    try:
        await connect("work", "ulla")
        await connect("personal", "vic")
        grants = {g.account: g for g in await engine.store.grants.list(user_id=user)}
        assert set(grants) == {"work", "personal"}
        for g in grants.values():
            remember(g.access_token)
            remember(g.refresh_token)
        digest = {a: hashlib.sha256(g.access_token.encode()).hexdigest()[:16] for a, g in grants.items()}
        _, listed = await engine.api("GET", f"/v1/admin/user_connections?user_id={user}")
        rows = {c["account"]: c for c in listed["items"]}
        assert set(rows) == {"work", "personal"} and listed["total_count"] == 2
        assert rows["work"]["is_default"] is True and rows["personal"]["is_default"] is False
        assert {rows[a]["provider_user_info"]["sub"] for a in rows} == {"ulla", "vic"}
        default = await who()
        assert default["sub"] == "ulla" and default["token_sha256"] == digest["work"]
        named = await who(extra_body={"account": "personal"})
        assert named["sub"] == "vic" and named["token_sha256"] == digest["personal"]
        await engine.store.grants.set_default(grants["personal"].id)
        assert (await who())["sub"] == "vic"
        assert (await who(extra_body={"account": "work"}))["sub"] == "ulla"
        missing = await client.tools.execute(
            tool_name="Echo.WhoAmI", input={}, user_id=user, extra_body={"account": "other"}
        )
        assert missing.success is False and missing.output and missing.output.authorization
        assert missing.output.authorization.url
    finally:
        await client.close()
