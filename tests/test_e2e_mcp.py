"""End to end over MCP: the official client, URL elicitation, headless sign-in at oidc-provider, the retry."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.plugins.keyturn_engine import API_KEY

pytestmark = pytest.mark.e2e


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
