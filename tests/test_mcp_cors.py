"""engine.mcp.cors: the CORS preflight and headers of /mcp, for the origins in mcp.allowed_origins only."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import MiniProvider, acme_config

APP = "https://app.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization, content-type, mcp-protocol-version, keyturn-user-id",
}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "browser", "version": "1"},
    },
}


def mcp_yaml(provider: MiniProvider, mcp: str) -> str:
    return acme_config(provider, extra=f"mcp:\n{mcp}")


async def preflight(engine: Any, origin: str | None, path: str = "/mcp") -> tuple[int, Any, Any]:
    headers = dict(PREFLIGHT, **({"Origin": origin} if origin else {}))
    async with engine.browser.options(engine.url + path, headers=headers) as resp:  # no API key, as browsers
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, resp.headers, body


async def test_no_origin_is_allowed_by_default(
    keyturn_engine: Any, mini_provider: MiniProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    """With mcp.allowed_origins unset every preflight is 403 (a JSON-RPC error), never counted as a bad
    API key, and no answer carries Access-Control-Allow-Origin; the Origin check on POST stays."""
    engine = await keyturn_engine(acme_config(mini_provider))
    for origin in (APP, "http://localhost:3000", None):
        status, headers, body = await preflight(engine, origin)
        assert status == 403 and "Access-Control-Allow-Origin" not in headers
        assert body["error"]["data"]["error"] == "origin_not_allowed"
    assert "api_key_denied" not in capsys.readouterr().out  # a preflight is not a failed key attempt
    auth = {
        "Authorization": f"Bearer {API_KEY}",
        "Origin": APP,
        "Accept": "application/json, text/event-stream",
    }
    async with engine.session.post(engine.url + "/mcp", json=INIT, headers=auth) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


async def test_a_listed_origin_gets_the_preflight_and_reads_the_answers(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """An origin in mcp.allowed_origins gets 204 with itself echoed (never *, no credentials), the MCP
    methods and headers; its requests' answers (the 401 too) let it read them and Mcp-Session-Id; another
    origin still gets 403 on the preflight and on POST."""
    engine = await keyturn_engine(mcp_yaml(mini_provider, f"  allowed_origins: ['{APP}/']"))
    status, headers, _ = await preflight(engine, APP)
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == APP and "Origin" in headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in headers
    assert set(headers["Access-Control-Allow-Methods"].split(", ")) == {"POST", "GET", "DELETE", "OPTIONS"}
    allowed = {h.strip().lower() for h in headers["Access-Control-Allow-Headers"].split(",")}
    assert {
        "authorization",
        "content-type",
        "mcp-session-id",
        "mcp-protocol-version",
        "keyturn-user-id",
    } <= allowed
    status, headers, _ = await preflight(engine, "https://evil.example")
    assert status == 403 and "Access-Control-Allow-Origin" not in headers
    accept = {"Origin": APP, "Accept": "application/json, text/event-stream"}
    async with engine.browser.post(engine.url + "/mcp", json=INIT, headers=accept) as resp:
        assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == APP
    signed = {**accept, "Authorization": f"Bearer {API_KEY}", "Keyturn-User-Id": "u@example.test"}
    async with engine.browser.post(engine.url + "/mcp", json=INIT, headers=signed) as resp:
        assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == APP
        assert "Mcp-Session-Id" in resp.headers["Access-Control-Expose-Headers"]
        assert resp.headers.get("Mcp-Session-Id")
    evil = {**signed, "Origin": "https://evil.example"}
    async with engine.browser.post(engine.url + "/mcp", json=INIT, headers=evil) as resp:
        assert resp.status == 403 and "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize("mcp", ["  enabled: false", "  gateways: [{slug: mail, tools: ['Echo.*']}]"])
async def test_gateways_are_served_and_unknown_paths_are_not(
    keyturn_engine: Any, mini_provider: MiniProvider, mcp: str
) -> None:
    """A gateway (/mcp/{slug}) answers the preflight like /mcp; an unknown slug, or MCP off, is 404."""
    engine = await keyturn_engine(mcp_yaml(mini_provider, f"{mcp}\n  allowed_origins: ['{APP}']"))
    enabled = "enabled: false" not in mcp
    status, _, _ = await preflight(engine, APP, "/mcp/mail")
    assert status == (204 if enabled else 404)
    status, _, _ = await preflight(engine, APP, "/mcp/nope")
    assert status == 404
    status, _, _ = await preflight(engine, APP)
    assert status == (204 if enabled else 404)
