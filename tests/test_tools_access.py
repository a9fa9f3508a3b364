"""API keys limited to tool globs (engine.tools.access): other tools are invisible over REST and MCP."""

from __future__ import annotations

from typing import Any

import aiohttp
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from engine.tools.access import Caller, tools_allow
from tests.plugins.keyturn_engine import API_KEY

MAIL_KEY = "mail-only-key-0123456789abcdef"
SECURITY = f"security: {{api_keys: ['{API_KEY}', {{key: '{MAIL_KEY}', tools: ['Gmail.*']}}]}}\n"
MAIL_TOOLS = {"Gmail.SendEmail", "Gmail.ListEmails", "Gmail.DeleteEmail"}
SEND = {"recipient": "bob@example.com", "subject": "hi", "body": "hello"}


async def call(engine: Any, key: str, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http,
        http.request(method, engine.url + path, **kw) as resp,
    ):
        return resp.status, await resp.json(content_type=None)


def test_globs_match_qualified_names_case_insensitively() -> None:
    """Globs match Toolkit.Tool names without regard to case; None allows every tool, () none."""
    assert tools_allow(["Gmail.*"], "gmail.SendEmail") and not tools_allow(["Gmail.*"], "Notes.Add")
    assert tools_allow(["*.Delete*"], "Gmail.DeleteEmail") and not tools_allow(["*.Delete*"], "Gmail.Send")
    assert tools_allow(None, "Notes.Add") and not tools_allow((), "Notes.Add")
    assert Caller("app", ("Notes.Add",)).allows("NOTES.ADD") and Caller("app").allows("Anything.At")


async def test_key_limited_to_gmail_lists_and_runs_only_gmail(
    keyturn_engine: Any, toolkit_worker: Any
) -> None:
    """A config key with tools: [Gmail.*] lists, shows and runs only Gmail tools; others: 404 unknown_tool."""
    worker = await toolkit_worker(mail=True)
    engine = await keyturn_engine(worker.yaml() + SECURITY)

    status, page = await call(engine, MAIL_KEY, "GET", "/v1/tools?limit=100")
    assert status == 200 and {t["qualified_name"] for t in page["items"]} == MAIL_TOOLS
    assert page["total_count"] == 3
    status, page = await call(engine, API_KEY, "GET", "/v1/tools?limit=100")
    assert {"Notes.Add", *MAIL_TOOLS} <= {t["qualified_name"] for t in page["items"]}
    status, formatted = await call(engine, MAIL_KEY, "GET", "/v1/formatted_tools?format=openai&limit=100")
    assert {f["function"]["name"] for f in formatted["items"]} == {n.replace(".", "_") for n in MAIL_TOOLS}

    hidden_status, hidden = await call(engine, MAIL_KEY, "GET", "/v1/tools/Notes.Add")
    missing_status, missing = await call(engine, MAIL_KEY, "GET", "/v1/tools/Notes.Nope")
    assert hidden_status == missing_status == 404
    assert hidden["error"] == missing["error"] == "unknown_tool"
    assert hidden["msg"].replace("Add", "X") == missing["msg"].replace("Nope", "X")  # no tell-tale
    status, body = await call(engine, MAIL_KEY, "GET", "/v1/formatted_tools/Notes_Add?format=anthropic")
    assert status == 404 and body["error"] == "unknown_tool"

    status, body = await call(
        engine, MAIL_KEY, "POST", "/v1/tools/execute", json={"tool_name": "Notes.Add", "input": {"text": "x"}}
    )
    assert status == 404 and body["error"] == "unknown_tool"
    status, body = await call(
        engine, MAIL_KEY, "POST", "/v1/tools/authorize", json={"tool_name": "Notes.Add", "user_id": "ann"}
    )
    assert status == 404 and body["error"] == "unknown_tool"
    status, body = await call(
        engine, MAIL_KEY, "POST", "/v1/tools/execute", json={"tool_name": "Gmail.SendEmail", "input": SEND}
    )
    assert status == 200 and body["success"] and body["output"]["value"]["sent_to"] == "bob@example.com"
    assert await worker.runs() == {"Gmail.SendEmail": 1}


async def test_stored_key_with_tools_is_limited(keyturn_engine: Any, toolkit_worker: Any) -> None:
    """A key made with tools globs (as `keyturn api-keys create --tools` does) sees only those tools."""
    worker = await toolkit_worker(mail=True)
    engine = await keyturn_engine(worker.yaml())
    record, plain = await engine.store.api_keys.create("notes-app", tools=["Notes.Add", "Gmail.List*"])
    assert record.tools == ("Notes.Add", "Gmail.List*")
    status, page = await call(engine, plain, "GET", "/v1/tools?limit=100")
    assert status == 200 and {t["qualified_name"] for t in page["items"]} == {"Notes.Add", "Gmail.ListEmails"}
    status, body = await call(
        engine, plain, "POST", "/v1/tools/execute", json={"tool_name": "Gmail.SendEmail", "input": SEND}
    )
    assert status == 404 and body["error"] == "unknown_tool"
    assert await worker.runs() == {}


async def test_key_limited_to_gmail_over_mcp(keyturn_engine: Any, toolkit_worker: Any) -> None:
    """Over MCP (official client) the limited key lists only Gmail tools and cannot call Notes_Add."""
    worker = await toolkit_worker(mail=True)
    engine = await keyturn_engine(worker.yaml() + SECURITY)
    headers = {"Authorization": f"Bearer {MAIL_KEY}", "Keyturn-User-Id": "ann@example.com"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1]) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        assert {t.name for t in listed.tools} == {n.replace(".", "_") for n in MAIL_TOOLS}
        with pytest.raises(MCPError) as info:
            await session.call_tool("Notes_Add", {"text": "x"})
        assert "Unknown tool" in info.value.message
        result = await session.call_tool("Gmail_SendEmail", SEND)
        assert not result.is_error and result.structured_content["sent_to"] == "bob@example.com"
    assert await worker.runs() == {"Gmail.SendEmail": 1}
