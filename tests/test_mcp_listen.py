"""engine.mcp.listen: subscriptions/listen streams tools/list_changed (2026-07-28)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from tests.plugins.mcp_backend import Serve

V = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": V, "io.modelcontextprotocol/clientCapabilities": {}}


async def events(resp: aiohttp.ClientResponse) -> Any:
    """Yield each SSE event's JSON data."""
    async for line in resp.content:
        text = line.decode().strip()
        if text.startswith("data:"):
            yield json.loads(text[5:])


async def open_listen(http: aiohttp.ClientSession, url: str, notifications: dict[str, Any]) -> Any:
    body = {
        "jsonrpc": "2.0",
        "id": "listen-1",
        "method": "subscriptions/listen",
        "params": {"notifications": notifications, "_meta": META},
    }
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": V,
        "Mcp-Method": "subscriptions/listen",
    }
    return await http.post(url, json=body, headers=headers)


async def test_listen_acknowledges_and_announces_changes(mcp_serve: Serve) -> None:
    """The ack names only toolsListChanged; a changed catalog sends list_changed tagged with the listen id."""
    url, backend = await mcp_serve(listen_poll=0.05)
    async with aiohttp.ClientSession() as http:
        resp = await open_listen(http, url, {"toolsListChanged": True, "promptsListChanged": True})
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        stream = events(resp)
        ack = await asyncio.wait_for(anext(stream), 5)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        assert ack["params"]["notifications"] == {"toolsListChanged": True}
        assert ack["params"]["_meta"] == {"io.modelcontextprotocol/subscriptionId": "listen-1"}
        backend.catalog += 1
        changed = await asyncio.wait_for(anext(stream), 5)
        assert changed == {
            "jsonrpc": "2.0",
            "method": "notifications/tools/list_changed",
            "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": "listen-1"}},
        }
        resp.close()


async def test_listen_without_tools_gets_nothing_and_ends_on_shutdown(mcp_serve: Serve) -> None:
    """Not asked for tools: no list_changed; a server shutdown ends the stream with the listen result."""
    url, backend = await mcp_serve(listen_poll=0.05)
    async with aiohttp.ClientSession() as http:
        resp = await open_listen(http, url, {"resourcesListChanged": True})
        stream = events(resp)
        ack = await asyncio.wait_for(anext(stream), 5)
        assert ack["params"]["notifications"] == {}
        backend.catalog += 1
        await asyncio.sleep(0.3)
        server = backend.server
        server.close_all()
        final = await asyncio.wait_for(anext(stream), 5)
        assert final["id"] == "listen-1" and final["result"]["resultType"] == "complete"
        assert final["result"]["_meta"]["io.modelcontextprotocol/subscriptionId"] == "listen-1"


async def test_listen_needs_sse_accept(mcp_serve: Serve) -> None:
    """A listen request that does not accept text/event-stream is refused (406)."""
    url, _ = await mcp_serve()
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "subscriptions/listen",
        "params": {"notifications": {}, "_meta": META},
    }
    headers = {"Accept": "application/json", "MCP-Protocol-Version": V, "Mcp-Method": "subscriptions/listen"}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 406
