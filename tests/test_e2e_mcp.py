"""End to end over MCP: the official client in each era, -32042 or input_required, oidc-provider sign-in."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.plugins.keyturn_engine import API_KEY

pytestmark = pytest.mark.e2e
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
}


async def test_elicitation_with_oidc_provider(keyturn_engine: Any, oidc_op: Any, echo_worker: Any) -> None:
    """-32042 with the flow link, sign-in at oidc-provider, elicitation/complete, then the retry works."""
    op = await oidc_op()
    worker = await echo_worker(op.issuer + "/me")
    engine = await keyturn_engine(worker.yaml())
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    await engine.reconfigure(op.provider_yaml(client_id, client_secret, id="acme") + worker.yaml())
    messages: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    async def on_message(message: Any) -> None:
        messages.append(message)

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": "erin@example.test"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(
            streams[0], streams[1], elicitation_callback=elicit, message_handler=on_message
        ) as session,
    ):
        await session.initialize()
        with pytest.raises(MCPError) as info:
            await session.call_tool("Echo_Ping", {})
        assert info.value.code == -32042
        elicitation = info.value.data["elicitations"][0]
        async with engine.browser.get(elicitation["url"], allow_redirects=False) as resp:
            provider_url = resp.headers["Location"] + "&login_hint=erin"
        async with engine.browser.get(provider_url, max_redirects=20) as resp:
            flow = await engine.store.flows.get(elicitation["url"].rsplit("/", 1)[1])
            assert resp.status == 200, (flow.error, flow.error_description)
        for _ in range(200):
            if elicitation["elicitationId"] in json.dumps([str(m) for m in messages]):
                break
            await asyncio.sleep(0.05)
        assert elicitation["elicitationId"] in json.dumps([str(m) for m in messages])
        result = await session.call_tool("Echo_Ping", {})
        assert not result.is_error and result.content[0].text == "pong"
    grant = await engine.store.grants.find("erin@example.test", "acme")
    assert grant.subject == "erin"


async def _engine_with_mcp_worker(
    keyturn_engine: Any, oidc_op: Any, arcade_mcp_worker: Any, extra: str = ""
) -> Any:
    op = await oidc_op()
    worker = await arcade_mcp_worker(op.issuer + "/me")
    engine = await keyturn_engine(worker.yaml() + extra)
    client_id, client_secret = await op.register(engine.url + "/v1/oauth/callback")
    await engine.reconfigure(op.provider_yaml(client_id, client_secret, id="acme") + worker.yaml() + extra)
    return engine


async def _sign_in(engine: Any, link: str, account: str) -> None:
    """What the user's browser does with the flow link: on to oidc-provider, signed in as ``account``."""
    async with engine.browser.get(link, allow_redirects=False) as resp:
        provider_url = resp.headers["Location"] + f"&login_hint={account}"
    async with engine.browser.get(provider_url, max_redirects=20) as resp:
        assert resp.status == 200, await resp.text()


@pytest.mark.parametrize("mode", ["legacy", "auto", "2026-07-28"])
async def test_official_client_each_mode(
    mode: str, keyturn_engine: Any, oidc_op: Any, arcade_mcp_worker: Any
) -> None:
    """Each client mode lists the arcade-mcp-server worker's tools, signs in, gets its own data."""
    engine = await _engine_with_mcp_worker(keyturn_engine, oidc_op, arcade_mcp_worker)
    user, account = f"{mode.replace('-', '')}@example.test", f"user{mode.replace('-', '')}"
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        await _sign_in(engine, params.url, account)
        return types.ElicitResult(action="accept")

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": user}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(
            streamable_http_client(engine.url + "/mcp", http_client=http),
            mode=mode,
            elicitation_callback=elicit,
        ) as c,
    ):
        assert c.protocol_version == ("2025-11-25" if mode == "legacy" else "2026-07-28")
        names = [t.name for t in (await c.list_tools()).tools]
        whoami = next(n for n in names if n.endswith("WhoAmI"))
        assert any(n.endswith("Echo") for n in names)
        if mode == "legacy":
            with pytest.raises(MCPError) as info:
                await c.call_tool(whoami, {})
            assert info.value.code == -32042
            await _sign_in(engine, info.value.data["elicitations"][0]["url"], account)
        result = await c.call_tool(whoami, {})
        assert not result.is_error, result
    grant = await engine.store.grants.find(user, "acme")
    value = result.structured_content or json.loads(result.content[0].text)
    assert value["sub"] == account == grant.subject
    assert value["token_sha256"] == hashlib.sha256(grant.access_token.encode()).hexdigest()[:16]
    if mode != "legacy":  # the URL input request carried the engine's flow link, once
        assert [(p.mode, p.url.split("/v1/oauth/start/")[0]) for p in asked] == [("url", engine.url)]


async def test_forged_or_replayed_request_state(
    keyturn_engine: Any, oidc_op: Any, arcade_mcp_worker: Any
) -> None:
    """Another user's, an expired, or a one-byte-changed requestState is refused by the whole engine."""
    engine = await _engine_with_mcp_worker(
        keyturn_engine,
        oidc_op,
        arcade_mcp_worker,
        extra=f"security: {{api_keys: ['{API_KEY}'], flow_ttl: 2s}}\n",
    )

    async def call(user: str, state: str | None = None, msg_id: int = 1) -> tuple[int, Any]:
        params: dict[str, Any] = {"name": "Keyturnmcp_WhoAmI", "arguments": {}, "_meta": META}
        if state is not None:
            params |= {"requestState": state, "inputResponses": {"authorization": {"action": "accept"}}}
        body = {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": params}
        headers = {
            "Authorization": f"Bearer {API_KEY}",
            "Keyturn-User-Id": user,
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": "Keyturnmcp_WhoAmI",
        }
        async with engine.session.post(engine.url + "/mcp", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    status, data = await call("mallory@example.test")
    assert status == 200 and data["result"]["resultType"] == "input_required", data
    state = data["result"]["requestState"]
    flipped = state[:-2] + ("A" if state[-2] != "A" else "B") + state[-1]
    for user, forged in (("victim@example.test", state), ("mallory@example.test", flipped)):
        status, data = await call(user, forged, 2)
        assert status == 400 and data["error"]["code"] == -32602, data
    await asyncio.sleep(3.1)  # past flow_ttl: the state's expiry
    status, data = await call("mallory@example.test", state, 3)
    assert status == 400 and "expired" in data["error"]["message"]
