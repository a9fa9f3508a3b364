"""engine.mcp.gateways: /mcp/{slug} lists and calls only its tools; /mcp keeps every tool."""

from __future__ import annotations

from typing import Any

import pytest

from engine.mcp.gateways import dotted
from tests.plugins.keyturn_engine import API_KEY

pytestmark = pytest.mark.e2e

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": "erin@example.test",
           "Accept": "application/json, text/event-stream"}  # fmt: skip
GATEWAYS = """
mcp:
  gateways:
    - {slug: say, title: Say only, instructions: "Only says things.", tools: ["Echo.Say"]}
    - {slug: all-echo, tools: ["Echo.*"]}
"""


async def rpc(engine: Any, path: str, method: str, params: dict[str, Any], sid: str | None = None) -> Any:
    headers = {**HEADERS, **({"Mcp-Session-Id": sid} if sid else {})}
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    async with engine.browser.post(engine.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers.get("Mcp-Session-Id")


async def session(engine: Any, path: str) -> tuple[str, dict[str, Any]]:
    params = {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    status, answer, sid = await rpc(engine, path, "initialize", params)
    assert status == 200 and sid, answer
    return sid, answer["result"]


async def names(engine: Any, path: str) -> set[str]:
    sid, _ = await session(engine, path)
    _, answer, _ = await rpc(engine, path, "tools/list", {}, sid)
    return {t["name"] for t in answer["result"]["tools"]}


async def test_a_gateway_lists_only_its_tools_and_refuses_another(
    keyturn_engine: Any, echo_worker: Any
) -> None:
    """/mcp/say lists Echo_Say only and answers Unknown tool for Echo_Ping; /mcp lists them all."""
    worker = await echo_worker()
    engine = await keyturn_engine(worker.yaml() + GATEWAYS)
    assert await names(engine, "/mcp/say") == {"Echo_Say"}
    everything = await names(engine, "/mcp")
    assert {"Echo_Say", "Echo_Ping", "Echo_WhoAmI"} <= everything
    assert await names(engine, "/mcp/all-echo") == {n for n in everything if n.startswith("Echo_")}
    sid, info = await session(engine, "/mcp/say")
    assert info["instructions"] == "Only says things." and info["serverInfo"]["name"] == "keyturn-say"
    _, answer, _ = await rpc(engine, "/mcp/say", "tools/call", {"name": "Echo_Ping", "arguments": {}}, sid)
    assert answer["error"]["code"] == -32602 and "Unknown tool" in answer["error"]["message"]
    _, answer, _ = await rpc(
        engine, "/mcp/say", "tools/call", {"name": "Echo_Say", "arguments": {"text": "hi"}}, sid
    )
    assert answer["result"]["content"][0]["text"] == "hi"
    status, _, _ = await rpc(engine, "/mcp/nope", "ping", {})
    assert status == 404
    async with engine.session.get(engine.url + "/v1/tools") as resp:  # REST unchanged
        listed = await resp.json()
    assert {"Echo.Say", "Echo.Ping"} <= {t["fully_qualified_name"].split("@")[0] for t in listed["items"]}


async def test_a_gateway_needs_the_api_key_in_mode_api_key(keyturn_engine: Any, echo_worker: Any) -> None:
    """Without the API key a gateway answers 401, like /mcp."""
    worker = await echo_worker()
    engine = await keyturn_engine(worker.yaml() + GATEWAYS)
    async with engine.browser.post(
        engine.url + "/mcp/say", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
    ) as r:
        assert r.status == 401


async def test_an_oauth_gateway_has_its_own_resource_metadata(oauth_engine: Any) -> None:
    """A gateway with auth oauth: its 401 points at its own RFC 9728 document naming /mcp/{slug}."""
    engine = await oauth_engine(mcp="  gateways: [{slug: mail, title: Mail tools, tools: ['Gmail.*']}]")
    async with engine.browser.post(
        engine.url + "/mcp/mail", json={"jsonrpc": "2.0", "id": 1, "method": "ping"}
    ) as r:
        assert r.status == 401
        challenge = r.headers["WWW-Authenticate"]
    prm_url = engine.url + "/.well-known/oauth-protected-resource/mcp/mail"
    assert f'resource_metadata="{prm_url}"' in challenge
    async with engine.browser.get(prm_url) as resp:
        prm = await resp.json()
    assert prm["resource"] == engine.url + "/mcp/mail" and prm["resource_name"] == "Mail tools"
    async with engine.browser.get(engine.url + "/.well-known/oauth-protected-resource/mcp/other") as resp:
        assert resp.status == 404


def test_dotted_names() -> None:
    """A tool's Toolkit.Tool name: its title, else its name with the first _ as a dot."""
    assert dotted({"name": "Gmail_ListEmails", "title": "Gmail.ListEmails"}) == "Gmail.ListEmails"
    assert dotted({"name": "gh_list_repos"}) == "gh.list_repos"
