"""engine.mcp.jwtcheck: ``mcp.auth: jwt`` with oidc-provider as the organisation's authorization server.

oidc-provider issues RFC 9068 JWT access tokens for the engine's /mcp URL (resource indicators on,
``jwt_resources`` in tests/e2e/oidc/server.mjs); Keyturn finds its keys by discovery.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.plugins.mcp_oauth import query
from tests.plugins.oidc import follow_login
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e

REDIRECT = "http://127.0.0.1:45678/cb"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    },
}


async def jwt_token(op: Any, client: tuple[str, str], resource: str, scope: str = "openid mcp:tools") -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    params = {"response_type": "code", "client_id": client[0], "redirect_uri": REDIRECT, "scope": scope,
              "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
              "resource": resource}  # fmt: skip
    async with aiohttp.ClientSession() as http:
        answer = await follow_login(http, f"{op.issuer}/auth?{urlencode(params)}", account="alice")
        form = {"grant_type": "authorization_code", "code": query(answer)["code"], "redirect_uri": REDIRECT,
                "code_verifier": verifier, "resource": resource}  # fmt: skip
        basic = {"Authorization": "Basic " + base64.b64encode(f"{client[0]}:{client[1]}".encode()).decode()}
        async with http.post(op.issuer + "/token", data=form, headers=basic) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    remember(body["access_token"])
    return str(body["access_token"])


async def post(engine: Any, path: str, token: str, **headers: str) -> tuple[int, Any, Any]:
    hdrs = {"Accept": "application/json, text/event-stream", **headers}
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with engine.browser.post(engine.url + path, json=INIT, headers=hdrs) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers


async def test_jwt_mode_with_oidc_provider(
    keyturn_engine: Any, start_oidc_provider: Any, echo_worker: Any
) -> None:
    """A JWT for /mcp acts for its sub; one for the gateway's URL, a tampered one or an opaque one: 401;
    the 401 and the resource metadata point at the issuer."""
    worker = await echo_worker()
    engine = await keyturn_engine(worker.yaml())
    op = start_oidc_provider(jwt_resources=[engine.url + "/mcp", engine.url + "/mcp/say"])
    client = await op.register_client([REDIRECT])
    await engine.reconfigure(
        worker.yaml()
        + f"""
auth:
  providers:
    - id: acme
      client_id: {op.client_id}
      client_secret: {op.client_secret}
      oauth2: {{issuer: "{op.issuer}", discovery: true, default_scopes: [openid]}}
mcp:
  auth: jwt
  jwt: {{issuer: "{op.issuer}", user_claim: sub, scopes: ["mcp:tools"]}}
  gateways: [{{slug: say, tools: ["Echo.Say"]}}]
"""
    )
    status, _, headers = await post(engine, "/mcp", "")
    prm_url = engine.url + "/.well-known/oauth-protected-resource/mcp"
    assert (
        status == 401
        and headers["WWW-Authenticate"] == f'Bearer resource_metadata="{prm_url}", scope="mcp:tools"'
    )
    async with engine.browser.get(prm_url) as resp:
        assert (await resp.json())["authorization_servers"] == [op.issuer]
    token = await jwt_token(op, client, engine.url + "/mcp")
    assert token.count(".") == 2
    status, answer, headers = await post(engine, "/mcp", token)
    assert status == 200, answer
    sid = headers["Mcp-Session-Id"]
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "Echo_Ping", "arguments": {}},
    }
    hdrs = {"Authorization": f"Bearer {token}", "Mcp-Session-Id": sid, "Accept": "application/json"}
    async with engine.browser.post(engine.url + "/mcp", json=call, headers=hdrs) as resp:
        answer = await resp.json()
    assert "result" in answer, answer
    result = answer["result"]
    assert result["isError"] and "/v1/oauth/start/" in result["content"][0]["text"]
    flow_id = result["content"][0]["text"].split("/v1/oauth/start/")[1].split()[0]
    assert (await engine.store.flows.get(flow_id)).user_id == "alice"  # the token's sub is the user
    assert (await post(engine, "/mcp", token, **{"Keyturn-User-Id": "bob"}))[0] == 400
    other = await jwt_token(op, client, engine.url + "/mcp/say")
    assert (await post(engine, "/mcp", other))[0] == 401  # another audience
    assert (await post(engine, "/mcp/say", other))[0] == 200
    head, body, sig = token.split(".")
    tampered = f"{head}.{body[:-4]}AAAA.{sig}"
    assert (await post(engine, "/mcp", tampered))[0] == 401
    opaque = await jwt_token(op, client, "urn:keyturn:api", scope="openid read")
    assert (await post(engine, "/mcp", opaque))[0] == 401
