"""engine.mcp.modern and engine.mcp.envelope: MCP 2026-07-28 on /mcp, raw HTTP and the official client."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import httpx2
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.plugins.mcp_backend import LINK, Serve

V = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": V,
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}


async def post(
    url: str,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    meta: dict[str, Any] | None = None,
    msg_id: Any = 1,
) -> tuple[int, Any, Any]:
    body: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": method,
        "params": {**(params or {}), "_meta": meta or META},
    }
    if msg_id is not None:
        body["id"] = msg_id
    sent = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": V,
        "Mcp-Method": method,
    }
    if method == "tools/call":
        sent["Mcp-Name"] = str((params or {}).get("name"))
    sent |= headers or {}
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=sent) as resp:
        data = await resp.json(content_type=None) if resp.status != 202 else None
        return resp.status, data, resp.headers


async def test_discover(mcp_serve: Serve) -> None:
    """server/discover: both eras' versions, tools with listChanged, serverInfo in _meta, cache hints."""
    url, _ = await mcp_serve()
    status, data, headers = await post(url, "server/discover")
    result = data["result"]
    assert status == 200 and "Mcp-Session-Id" not in headers
    assert result["supportedVersions"] == ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"]
    assert result["resultType"] == "complete" and result["capabilities"]["tools"] == {"listChanged": True}
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"] == {"name": "keyturn", "version": "9.9"}
    assert result["ttlMs"] > 0 and result["cacheScope"] == "public" and result["instructions"]
    types.DiscoverResult.model_validate(result)
    # a client that sent neither the header nor _meta may ask too
    async with aiohttp.ClientSession() as http:
        body = {"jsonrpc": "2.0", "id": 2, "method": "server/discover"}
        async with http.post(url, json=body, headers={"Accept": "application/json"}) as resp:
            assert (await resp.json())["result"]["supportedVersions"][0] == V


async def test_list_and_call_stateless(mcp_serve: Serve) -> None:
    """tools/list and tools/call need no session; results carry resultType, ttlMs/cacheScope on the list."""
    url, _ = await mcp_serve()
    status, data, headers = await post(url, "tools/list", headers={"Mcp-Session-Id": "made-up"})
    assert status == 200 and "Mcp-Session-Id" not in headers
    listed = types.ListToolsResult.model_validate(data["result"])
    assert [t.name for t in listed.tools] == ["echo", "whoami"]
    assert (listed.result_type, listed.ttl_ms, listed.cache_scope) == ("complete", 0, "private")
    status, data, _ = await post(url, "tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    assert status == 200 and data["result"]["resultType"] == "complete"
    assert data["result"]["content"][0]["text"] == "hi"
    assert data["result"]["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "keyturn"


@pytest.mark.parametrize(
    ("headers", "meta", "code"),
    [
        ({"MCP-Protocol-Version": "2025-11-25"}, None, -32020),
        ({"Mcp-Method": "tools/list"}, None, -32020),
        ({"Mcp-Name": "whoami"}, None, -32020),
        ({"Mcp-Name": "=?base64?ZWNobw==?="}, None, 0),  # "echo", encoded: matches
        ({}, {"io.modelcontextprotocol/protocolVersion": V}, -32602),
        (
            {"MCP-Protocol-Version": "2099-01-01"},
            {**META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"},
            -32022,
        ),
    ],
    ids=["version-header", "method-header", "name-header", "name-base64", "no-capabilities", "unsupported"],
)
async def test_envelope_ladder(mcp_serve: Serve, headers: dict[str, str], meta: Any, code: int) -> None:
    """Mismatched headers -32020, missing _meta keys -32602, an unknown version -32022 with the list: 400."""
    url, _ = await mcp_serve()
    status, data, _ = await post(
        url, "tools/call", {"name": "echo", "arguments": {"text": "x"}}, headers=headers, meta=meta
    )
    if code == 0:
        assert status == 200 and data["result"]["content"][0]["text"] == "x"
        return
    assert status == 400 and data["error"]["code"] == code and data["id"] == 1, data
    if code == -32022:
        assert data["error"]["data"] == {
            "supported": ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"],
            "requested": "2099-01-01",
        }


async def test_duplicate_routing_header(mcp_serve: Serve) -> None:
    """A routing header sent twice is a header mismatch (-32020, 400)."""
    url, _ = await mcp_serve()
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": META}}
    headers = [("MCP-Protocol-Version", V), ("Mcp-Method", "tools/list"), ("Mcp-Method", "tools/call")]
    async with aiohttp.ClientSession() as http, http.post(url, json=body, headers=headers) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == -32020


async def test_unknown_method_bad_params_notification_get_delete(mcp_serve: Serve) -> None:
    """Unknown (and removed) methods 404 -32601; bad params 400 -32602; notifications 202; GET/DELETE 405."""
    url, _ = await mcp_serve()
    for method in ("prompts/list", "ping", "nope/nope"):
        status, data, _ = await post(url, method)
        assert status == 404 and data["error"]["code"] == -32601, (method, data)
    status, data, _ = await post(url, "tools/call", {"arguments": {}})
    assert status == 400 and data["error"]["code"] == -32602 and "name" in data["error"]["message"]
    status, data, _ = await post(url, "tools/call", {"name": "nope", "arguments": {}})
    assert status == 400 and data["error"]["code"] == -32602
    status, _, _ = await post(url, "notifications/cancelled", {"requestId": 1}, msg_id=None)
    assert status == 202
    async with aiohttp.ClientSession() as http:
        for verb in ("GET", "DELETE"):
            headers = {"MCP-Protocol-Version": V, "Accept": "text/event-stream"}
            async with http.request(verb, url, headers=headers) as resp:
                assert resp.status == 405 and resp.headers["Allow"] == "POST"


async def test_input_required_then_retry(mcp_serve: Serve) -> None:
    """Sign-in needed: input_required with a URL request and a state; the retry runs once authorized."""
    url, backend = await mcp_serve(input_wait=0.2)
    status, data, _ = await post(url, "tools/call", {"name": "whoami", "arguments": {}})
    result = data["result"]
    assert status == 200 and result["resultType"] == "input_required"
    request = result["inputRequests"]["authorization"]
    assert request == {
        "method": "elicitation/create",
        "params": {"mode": "url", "message": "Authorize access to acme to continue.", "url": LINK},
    }
    state = result["requestState"]
    retry = {"name": "whoami", "arguments": {}, "inputResponses": {"authorization": {"action": "accept"}}}
    # still pending after the bounded wait: asked again with a fresh state only
    _, data, _ = await post(url, "tools/call", {**retry, "requestState": state}, msg_id=2)
    again = data["result"]
    assert again["resultType"] == "input_required" and "inputRequests" not in again
    backend.complete()
    _, data, _ = await post(url, "tools/call", {**retry, "requestState": again["requestState"]}, msg_id=3)
    assert data["result"]["resultType"] == "complete"
    assert data["result"]["content"][0]["text"] == "you are alice"


async def test_forged_state_refused(mcp_serve: Serve) -> None:
    """A changed byte, another tool's or other arguments' state, or a state from elsewhere: -32602."""
    url, _ = await mcp_serve()
    _, data, _ = await post(url, "tools/call", {"name": "whoami", "arguments": {}})
    state = data["result"]["requestState"]
    flipped = state[:-2] + ("A" if state[-2] != "A" else "B") + state[-1]
    cases = [
        ("whoami", {}, flipped),
        ("whoami", {"x": 1}, state),
        ("echo", {"text": "x"}, state),
        ("whoami", {}, "v1.local.AAAA"),
    ]
    for name, arguments, forged in cases:
        status, data, _ = await post(
            url, "tools/call", {"name": name, "arguments": arguments, "requestState": forged}
        )
        assert status == 400 and data["error"]["code"] == -32602, (name, data)
        assert "requestState" in data["error"]["message"]


async def test_declined_and_no_url_capability(mcp_serve: Serve) -> None:
    """Declined: the link in an isError result; a client without elicitation.url gets the same at once."""
    url, _ = await mcp_serve()
    _, data, _ = await post(url, "tools/call", {"name": "whoami", "arguments": {}})
    declined = {"authorization": {"action": "decline"}}
    params = {
        "name": "whoami",
        "arguments": {},
        "inputResponses": declined,
        "requestState": data["result"]["requestState"],
    }
    _, data, _ = await post(url, "tools/call", params, msg_id=2)
    assert data["result"]["isError"] and data["result"]["structuredContent"]["authorization_url"] == LINK
    plain = {**META, "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}}}
    _, data, _ = await post(url, "tools/call", {"name": "whoami", "arguments": {}}, meta=plain)
    result = data["result"]
    assert result["resultType"] == "complete" and result["isError"] and LINK in result["content"][0]["text"]
    assert result["structuredContent"] == {"authorization_url": LINK, "provider_id": "acme"}


@pytest.mark.parametrize("mode", [V, "auto"])
async def test_official_client_modern(mcp_serve: Serve, mode: str) -> None:
    """The official client pinned to 2026-07-28, and in auto mode, lists, calls, signs in and retries."""
    url, backend = await mcp_serve(input_wait=5)
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        asyncio.get_running_loop().call_later(0.1, backend.complete)  # the user signs in a moment later
        return types.ElicitResult(action="accept")

    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode, elicitation_callback=elicit) as c,
    ):
        assert c.protocol_version == V
        assert [t.name for t in (await c.list_tools()).tools] == ["echo", "whoami"]
        assert (await c.call_tool("echo", {"text": "hi"})).content[0].text == "hi"
        result = await c.call_tool("whoami", {})
        assert not result.is_error and result.content[0].text == "you are alice"
    assert [(p.mode, p.url) for p in asked] == [("url", LINK)]


async def test_official_client_modern_failed_flow_is_named(mcp_serve: Serve) -> None:
    """The official client (2026-07-28) whose sign-in fails gets an isError result saying so, not a prompt."""
    url, backend = await mcp_serve(input_wait=5)
    asked: list[Any] = []

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        asyncio.get_running_loop().call_later(0.1, backend.fail)  # denied at the provider a moment later
        return types.ElicitResult(action="accept")

    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=V, elicitation_callback=elicit) as c,
    ):
        result = await c.call_tool("whoami", {})
        assert result.is_error and len(asked) == 1
        assert "previous authorization for acme did not complete: it failed" in result.content[0].text
        assert result.structured_content is not None
        assert result.structured_content["authorization_url"] == LINK
