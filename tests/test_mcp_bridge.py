"""engine.mcp.bridge: an upstream MCP server (official SDK) that checks bearer tokens, bridged per user."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider, acme_config

UPSTREAM = Path(__file__).parent / "mcp_upstream" / "server.py"


@contextlib.asynccontextmanager
async def start_upstream(mini_provider: MiniProvider, *mode: str) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(UPSTREAM),
        "0",
        mini_provider.url("/userinfo"),
        *mode,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    port = None
    try:
        while port is None:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            with contextlib.suppress(ValueError):
                port = json.loads(line)["port"]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        await proc.wait()


@pytest.fixture
async def upstream(mini_provider: MiniProvider) -> AsyncIterator[str]:
    async with start_upstream(mini_provider) as url:
        yield url


@contextlib.asynccontextmanager
async def client(engine: Any, messages: list[Any]) -> AsyncIterator[ClientSession]:
    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    async def on_message(message: Any) -> None:
        messages.append(message)

    headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": USER}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(
            streams[0], streams[1], elicitation_callback=elicit, message_handler=on_message
        ) as session,
    ):
        await session.initialize()
        yield session


def dump(messages: list[Any]) -> str:
    return json.dumps([m.model_dump(mode="json") if hasattr(m, "model_dump") else str(m) for m in messages])


async def test_bridge_uses_the_users_token(
    keyturn_engine: Any, mini_provider: MiniProvider, upstream: str
) -> None:
    """After authorization calls reach the upstream with the user's token, which never reaches the client."""
    mini_provider.strict_userinfo = True
    server = f"{{id: up, url: '{upstream}', requires_auth: {{provider: acme, scopes: [read]}}}}"
    extra = f"mcp: {{servers: [{server}]}}\n"
    engine = await keyturn_engine(acme_config(mini_provider, extra=extra))
    messages: list[Any] = []
    async with client(engine, messages) as session:
        with pytest.raises(MCPError) as info:
            await session.call_tool("up_whoami", {})
        assert info.value.code == -32042
        link = info.value.data["elicitations"][0]["url"]
        async with engine.browser.get(link) as resp:
            assert resp.status == 200
        tools = await session.list_tools()
        assert {"up_whoami", "up_add"} <= {t.name for t in tools.tools}
        result = await session.call_tool("up_whoami", {})
        assert not result.is_error, result
        grant = await engine.store.grants.find(USER, "acme")
        payload = json.loads(result.content[0].text)
        assert payload["sub"] == "u-123"
        assert payload["token_sha256"] == hashlib.sha256(grant.access_token.encode()).hexdigest()[:16]
        added = await session.call_tool("up_add", {"a": 2, "b": 3})
        assert added.content[0].text == "5"
        # the provider now refuses the token: the engine refreshes once and retries
        mini_provider.dead_tokens.add(grant.access_token)
        again = await session.call_tool("up_whoami", {})
        assert not again.is_error, again
        fresh = await engine.store.grants.find(USER, "acme")
        assert fresh.access_token != grant.access_token
        for token in (grant.access_token, fresh.access_token, grant.refresh_token):
            assert token not in dump(messages) + str(result) + str(again)


async def test_the_upstreams_resource_is_sent_on_authorization_token_and_refresh(
    keyturn_engine: Any, mini_provider: MiniProvider, upstream: str
) -> None:
    """The upstream provider's oauth2.resource (RFC 8707): on the authorization, code and refresh requests."""
    mini_provider.strict_userinfo = True
    server = f"{{id: up, url: '{upstream}', requires_auth: {{provider: acme, scopes: [read]}}}}"
    config = acme_config(mini_provider, extra=f"mcp: {{servers: [{server}]}}\n")
    engine = await keyturn_engine(
        config.replace("      oauth2:\n", f"      oauth2:\n        resource: '{upstream}'\n")
    )
    async with client(engine, []) as session:
        with pytest.raises(MCPError) as info:
            await session.call_tool("up_whoami", {})
        async with engine.browser.get(info.value.data["elicitations"][0]["url"]) as resp:
            assert resp.status == 200
        assert not (await session.call_tool("up_whoami", {})).is_error
        grant = await engine.store.grants.find(USER, "acme")
        mini_provider.dead_tokens.add(grant.access_token)  # refused upstream: refreshed once, retried
        assert not (await session.call_tool("up_whoami", {})).is_error
    assert [p.get("resource") for p in mini_provider.authorize_params] == [upstream]
    sent = [(c["grant_type"], c.get("resource")) for c in mini_provider.token_calls]
    assert sent == [("authorization_code", upstream), ("refresh_token", upstream)]


@pytest.mark.parametrize("mode", [(), ("sse",)], ids=["json", "sse"])
async def test_large_upstream_answers(
    keyturn_engine: Any, mini_provider: MiniProvider, mode: tuple[str, ...]
) -> None:
    """A 300 KB upstream answer (JSON or SSE) is bridged whole; one over 8 MiB errs naming the limit."""
    async with start_upstream(mini_provider, *mode) as url:
        server = f"{{id: up, url: '{url}', requires_auth: {{provider: acme, scopes: [read]}}}}"
        engine = await keyturn_engine(acme_config(mini_provider, extra=f"mcp: {{servers: [{server}]}}\n"))
        async with client(engine, []) as session:
            with pytest.raises(MCPError) as info:
                await session.call_tool("up_repeat", {"text": "x", "times": 1})
            async with engine.browser.get(info.value.data["elicitations"][0]["url"]) as resp:
                assert resp.status == 200
            result = await session.call_tool("up_repeat", {"text": "0123456789", "times": 30_000})
            assert not result.is_error and result.content[0].text == "0123456789" * 30_000
            huge = await session.call_tool("up_repeat", {"text": "0123456789", "times": 900_000})
            assert huge.is_error
            assert huge.content[0].text == (
                "upstream MCP server up's answer to tools/call is larger than the limit of 8 MiB"
            )


@pytest.mark.parametrize(("era", "version"), [("modern-only", "2026-07-28"), ("legacy-only", "2025-11-25")])
async def test_bridge_speaks_the_upstreams_era(
    keyturn_engine: Any, mini_provider: MiniProvider, era: str, version: str
) -> None:
    """An upstream serving only 2026-07-28, or only 2025-11-25, is listed and called in its own era."""
    async with start_upstream(mini_provider, era) as url:
        server = f"{{id: up, url: '{url}', requires_auth: {{provider: acme, scopes: [read]}}}}"
        engine = await keyturn_engine(acme_config(mini_provider, extra=f"mcp: {{servers: [{server}]}}\n"))
        async with client(engine, []) as session:
            with pytest.raises(MCPError) as info:
                await session.call_tool("up_protocol", {})
            async with engine.browser.get(info.value.data["elicitations"][0]["url"]) as resp:
                assert resp.status == 200
            assert {"up_whoami", "up_protocol"} <= {t.name for t in (await session.list_tools()).tools}
            assert (await session.call_tool("up_protocol", {})).content[0].text == version
            who = await session.call_tool("up_whoami", {})
            assert json.loads(who.content[0].text)["sub"] == "u-123"


async def test_upstream_input_required_passes_through(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """A modern client gets the upstream's own input request; the upstream's state comes back untouched."""
    async with start_upstream(mini_provider, "modern-only") as url:
        server = f"{{id: up, url: '{url}', requires_auth: {{provider: acme, scopes: [read]}}}}"
        engine = await keyturn_engine(acme_config(mini_provider, extra=f"mcp: {{servers: [{server}]}}\n"))
        asked: list[Any] = []

        async def elicit(context: Any, params: Any) -> types.ElicitResult:
            asked.append(params.mode)
            if params.mode == "url":  # Keyturn's own sign-in
                async with engine.browser.get(params.url) as resp:
                    assert resp.status == 200
                return types.ElicitResult(action="accept")
            assert params.message == "Sure?"
            return types.ElicitResult(action="accept", content={"sure": True})

        headers = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": USER}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=30) as http,
            Client(
                streamable_http_client(engine.url + "/mcp", http_client=http),
                mode="2026-07-28",
                elicitation_callback=elicit,
            ) as c,
        ):
            assert (await c.call_tool("up_protocol", {})).content[0].text == "2026-07-28"
            result = await c.call_tool("up_confirm", {})
            assert not result.is_error, result
            assert result.content[0].text == "confirmed sure=True state=upstream-state-1"
        assert asked == ["url", "form"]
        # a handshake-era client cannot answer: it is told so in a tool error
        async with client(engine, []) as session:
            legacy = await session.call_tool("up_confirm", {})
            assert legacy.is_error and "2026-07-28" in legacy.content[0].text
