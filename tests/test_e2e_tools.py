"""End to end: the seed's arcadepy tool calls against Keyturn, the reference worker and oidc-provider."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from arcadepy import AsyncArcade

from tests.plugins.keyturn_engine import API_KEY
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
