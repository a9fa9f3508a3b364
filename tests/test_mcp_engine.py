"""engine.mcp.engine_backend: the engine's worker tools over /mcp with the official MCP client."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from engine.wiring.services import TOOLS
from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider, acme_config


@pytest.fixture
async def engine(keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any) -> Any:
    worker = await echo_worker(mini_provider.url("/userinfo"))
    return await keyturn_engine(acme_config(mini_provider, extra=worker.yaml()))


@contextlib.asynccontextmanager
async def mcp_session(
    engine: Any,
    *,
    user: str | None = USER,
    elicit: Any = None,
    messages: list[Any] | None = None,
    api_key: str = API_KEY,
) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {api_key}"}
    if user:
        headers["Keyturn-User-Id"] = user

    async def on_message(message: Any) -> None:
        if messages is not None:
            messages.append(message)

    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(
            streams[0], streams[1], elicitation_callback=elicit, message_handler=on_message
        ) as session,
    ):
        await session.initialize()
        yield session


async def test_list_and_call(engine: Any) -> None:
    """initialize, tools/list with every worker tool, and a tools/call that needs no authorization."""
    async with mcp_session(engine) as session:
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} >= {"Echo_Say", "Echo_WhoAmI", "Echo_Secret"}
        say = next(t for t in tools.tools if t.name == "Echo_Say")
        assert say.input_schema["required"] == ["text"]
        result = await session.call_tool("Echo_Say", {"text": "over mcp"})
        assert not result.is_error and result.content[0].text == "over mcp"
        bad = await session.call_tool("Echo_Say", {})
        assert bad.is_error and "text" in bad.content[0].text
        await session.send_ping()


async def test_url_elicitation_then_retry(engine: Any) -> None:
    """URL elicitation: -32042 with the flow link, then elicitation/complete; the retried call works."""
    messages: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    async with mcp_session(engine, elicit=elicit, messages=messages) as session:
        with pytest.raises(MCPError) as info:
            await session.call_tool("Echo_WhoAmI", {})
        assert info.value.code == -32042
        elicitation = info.value.data["elicitations"][0]
        assert elicitation["mode"] == "url" and elicitation["url"].startswith(engine.url + "/v1/oauth/start/")
        async with engine.browser.get(elicitation["url"]) as resp:
            assert resp.status == 200
        for _ in range(100):
            if any("elicitation/complete" in json.dumps(_plain(m)) for m in messages):
                break
            await asyncio.sleep(0.05)
        assert any(elicitation["elicitationId"] in json.dumps(_plain(m)) for m in messages)
        result = await session.call_tool("Echo_WhoAmI", {})
        assert not result.is_error, result
        grant = await engine.store.grants.find(USER, "acme")
        assert grant.access_token not in json.dumps([_plain(m) for m in messages]) + str(result)


async def test_link_in_result_without_url_capability(engine: Any) -> None:
    """A client without URL elicitation gets an isError result whose text carries the link."""
    async with mcp_session(engine) as session:
        result = await session.call_tool("Echo_WhoAmI", {})
        assert result.is_error and (engine.url + "/v1/oauth/start/") in result.content[0].text


async def test_api_key_required(engine: Any) -> None:
    """Without a valid API key /mcp answers 401."""
    async with httpx2.AsyncClient() as http:
        resp = await http.post(engine.url + "/mcp", json=_init(), headers={"Authorization": "Bearer nope"})
        assert resp.status_code == 401


async def test_http_edge_cases(engine: Any) -> None:
    """Bad Origin 403, bad JSON -32700, missing/unknown session 400/404, DELETE, unknown method."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(headers=headers) as http:
        url = engine.url + "/mcp"
        assert (
            await http.post(url, json=_init(), headers={"Origin": "https://evil.example"})
        ).status_code == 403
        assert (
            await http.post(url, json=_init(), headers={"Origin": "http://localhost:3000"})
        ).status_code == 200
        bad = await http.post(url, content=b"{nope", headers={"Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == -32700
        init = await http.post(url, json=_init())
        sid = init.headers["Mcp-Session-Id"]
        assert init.json()["result"]["protocolVersion"] == "2025-11-25"
        ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        assert (await http.post(url, json=ping)).status_code == 400
        assert (await http.post(url, json=ping, headers={"Mcp-Session-Id": "nope"})).status_code == 404
        ok = await http.post(url, json=ping, headers={"Mcp-Session-Id": sid})
        assert ok.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}
        unknown = await http.post(
            url, json={"jsonrpc": "2.0", "id": 3, "method": "nope/nope"}, headers={"Mcp-Session-Id": sid}
        )
        assert unknown.json()["error"]["code"] == -32601
        note = await http.post(
            url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers={"Mcp-Session-Id": sid},
        )
        assert note.status_code == 202
        assert (await http.delete(url, headers={"Mcp-Session-Id": sid})).status_code == 200
        assert (await http.post(url, json=ping, headers={"Mcp-Session-Id": sid})).status_code == 404
        old = await http.post(
            url, json={**_init(), "params": {**_init()["params"], "protocolVersion": "2025-06-18"}}
        )
        assert old.json()["result"]["protocolVersion"] == "2025-06-18"


def _init() -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }


def _plain(message: Any) -> Any:
    dump = getattr(message, "model_dump", None)
    return dump(mode="json", by_alias=True) if dump else str(message)


async def test_errors_reach_the_client_as_json_rpc(engine: Any) -> None:
    """On the engine's app every /mcp error is a JSON-RPC error object with the engine's own message:
    a wrong API key, a foreign Origin, deep JSON, a user id over 256 characters."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json, text/event-stream"}
    async with httpx2.AsyncClient(headers=headers) as http:
        url = engine.url + "/mcp"
        denied = await http.post(url, json=_init(), headers={"Authorization": "Bearer nope"})
        assert denied.status_code == 401 and denied.json()["error"]["message"] == "invalid API key"
        assert denied.json()["error"]["data"] == {"error": "unauthorized", "status": 401}
        foreign = await http.post(url, json=_init(), headers={"Origin": "https://evil.example"})
        assert foreign.status_code == 403 and "Origin is not allowed" in foreign.json()["error"]["message"]
        deep = await http.post(url, content=b"[" * 100_000 + b"]" * 100_000)
        assert deep.status_code == 400 and deep.json()["error"]["code"] == -32700
        assert "nested deeper than 1024 levels" in deep.json()["error"]["message"]
        long_user = await http.post(url, json=_init(), headers={"Keyturn-User-Id": "u" * 257})
        assert long_user.status_code == 400 and long_user.json()["error"]["code"] == -32600
        assert "Keyturn-User-Id is longer than 256 characters" in long_user.json()["error"]["message"]


async def test_listen_announces_a_workers_new_tools(
    keyturn_engine: Any, mini_provider: MiniProvider, echo_worker: Any, arcade_mcp_worker: Any
) -> None:
    """subscriptions/listen on a whole engine: a worker added (catalog refreshed) sends tools/list_changed."""
    first = await echo_worker(mini_provider.url("/userinfo"))
    second = await arcade_mcp_worker(mini_provider.url("/userinfo"))
    engine = await keyturn_engine(acme_config(mini_provider, extra=first.yaml()))
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 5,
        "method": "subscriptions/listen",
        "params": {"notifications": {"toolsListChanged": True}, "_meta": meta},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2026-07-28",
        "Mcp-Method": "subscriptions/listen",
        "Keyturn-User-Id": USER,
    }
    async with engine.session.post(engine.url + "/mcp", json=body, headers=headers) as resp:
        assert resp.status == 200

        async def next_event() -> Any:
            async for line in resp.content:
                if line.startswith(b"data:"):
                    return json.loads(line[5:])
            return None

        ack = await asyncio.wait_for(next_event(), 10)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        await engine.reconfigure(
            acme_config(mini_provider, extra=first.yaml() + second.yaml("mcpw").replace("workers:\n", ""))
        )
        await engine.app[TOOLS].registry.refresh()  # what the catalog refresh loop does
        changed = await asyncio.wait_for(next_event(), 10)
        assert changed["method"] == "notifications/tools/list_changed"
        assert changed["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": 5}
