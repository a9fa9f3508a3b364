"""End to end: the official MCP Python SDK's own OAuth client against a whole engine with ``mcp.auth: oauth``.

401 -> protected resource metadata -> authorization server metadata -> registration (RFC 7591, or a
Client ID Metadata Document over https with a test CA) -> sign-in at oidc-provider -> consent ->
tokens -> tools/list -> a call needing the user's acme grant -> URL elicitation -> the provider
sign-in, verified by the same sign-in -> the retried call returns the user's data. Both eras: the
handshake era (-32042) and 2026-07-28 (the client pinned to it: ``input_required`` URL request).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from aiohttp import web
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from mcp.shared.exceptions import MCPError

from tests.plugins.login import finish_flow
from tests.plugins.mcp_oauth import authorize_in_browser, make_test_ca, query
from tests.plugins.token_scan import remember

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"


class MemoryStorage:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        remember(tokens.access_token)
        if tokens.refresh_token:
            remember(tokens.refresh_token)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def sdk_provider(
    engine: Any, browser: Any, storage: MemoryStorage, answers: list[str], metadata_url: str | None = None
) -> OAuthClientProvider:
    """The SDK's OAuth client; its "browser" signs alice in at oidc-provider and consents."""
    redirect_uri = "http://127.0.0.1:33418/callback"

    async def redirect_handler(url: str) -> None:
        answers.append(await authorize_in_browser(engine, browser, url, "alice"))

    async def callback_handler() -> AuthorizationCodeResult:
        params = query(answers[-1])
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    return OAuthClientProvider(
        server_url=engine.url + "/mcp",
        client_metadata=OAuthClientMetadata(
            client_name="SDK test client",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none" if metadata_url else "client_secret_post",
        ),
        storage=storage,
        redirect_handler=redirect_handler,
        callback_handler=callback_handler,
        client_metadata_url=metadata_url,
    )


async def run_client(engine: Any, *, metadata_url: str | None = None) -> tuple[MemoryStorage, list[str], Any]:
    """The SDK client signs alice in, lists tools, gets the acme authorization URL, retries the call."""
    browser = engine.new_browser()
    storage = MemoryStorage()
    answers: list[str] = []
    provider = sdk_provider(engine, browser, storage, answers, metadata_url)

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action="accept")

    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        streamable_http_client(engine.url + "/mcp", http_client=http) as streams,
        ClientSession(streams[0], streams[1], elicitation_callback=elicit) as session,
    ):
        await session.initialize()
        listed = await session.list_tools()
        assert {"Echo_WhoAmI", "Echo_Say"} <= {t.name for t in listed.tools}
        with pytest.raises(MCPError) as info:
            await session.call_tool("Echo_WhoAmI", {})
        assert info.value.code == -32042
        link = info.value.data["elicitations"][0]["url"]
        status, final, _ = await finish_flow(engine, browser, link, "alice")  # signed in already: verified
        assert status == 200 and final.endswith("/connections?notice=connected"), final
        result = await session.call_tool("Echo_WhoAmI", {})
        assert not result.is_error, result
        data = json.loads(result.content[0].text)
    return storage, answers, data


async def test_sdk_client_registers_signs_in_and_calls_a_tool(
    oauth_engine: Any, echo_worker: Any, oidc_provider: Any
) -> None:
    """DCR: 401, discovery, registration, sign-in, consent, tokens, tools, elicitation, the user's data."""
    worker = await echo_worker(oidc_provider.issuer + "/me")
    engine = await oauth_engine(worker=worker)
    storage, answers, data = await run_client(engine)
    assert data == {"sub": "alice", "user_id": ALICE, "token_sha256": data["token_sha256"]}
    assert storage.client is not None and storage.client.client_id.startswith("mcpc_")
    assert query(answers[0])["iss"] == engine.url
    grant = await engine.store.grants.find(ALICE, "acme")
    assert grant is not None and grant.status == "active"
    remember(grant.access_token)


async def test_sdk_client_pinned_to_2026_07_28_signs_in_and_calls_a_tool(
    oauth_engine: Any, echo_worker: Any, oidc_provider: Any
) -> None:
    """2026-07-28: 401, discovery, DCR, sign-in, consent, tools, input_required URL, sign-in, user data."""
    worker = await echo_worker(oidc_provider.issuer + "/me")
    engine = await oauth_engine(worker=worker)
    browser = engine.new_browser()
    storage, answers, asked = MemoryStorage(), [], []
    provider = sdk_provider(engine, browser, storage, answers)

    async def elicit(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params)
        status, final, _ = await finish_flow(engine, browser, params.url, "alice")  # signed in: verified
        assert status == 200 and final.endswith("/connections?notice=connected"), final
        return types.ElicitResult(action="accept")

    async with (
        httpx2.AsyncClient(auth=provider, timeout=60) as http,
        Client(
            streamable_http_client(engine.url + "/mcp", http_client=http),
            mode="2026-07-28",
            elicitation_callback=elicit,
        ) as client,
    ):
        assert client.protocol_version == "2026-07-28"
        listed = await client.list_tools()
        assert {"Echo_WhoAmI", "Echo_Say"} <= {t.name for t in listed.tools}
        result = await client.call_tool("Echo_WhoAmI", {})
        assert not result.is_error, result
        data = result.structured_content or json.loads(result.content[0].text)
    assert data == {"sub": "alice", "user_id": ALICE, "token_sha256": data["token_sha256"]}
    assert [(p.mode, p.url.split("/v1/oauth/start/")[0]) for p in asked] == [("url", engine.url)]
    assert storage.client is not None and storage.client.client_id.startswith("mcpc_")
    assert query(answers[0])["iss"] == engine.url and len(answers) == 1  # one sign-in, one consent
    grant = await engine.store.grants.find(ALICE, "acme")
    assert grant is not None and grant.status == "active"
    remember(grant.access_token)


async def test_sdk_client_with_a_client_id_metadata_document(
    oauth_engine: Any, echo_worker: Any, oidc_provider: Any, serve_https: Any, tmp_path: Path
) -> None:
    """CIMD: the client's https metadata document (test CA trusted by the engine) replaces registration."""
    ca = make_test_ca(tmp_path)
    document: dict[str, Any] = {}

    async def client_json(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/client.json", client_json)
    origin = await serve_https(ca, app)
    url = origin + "/client.json"
    document.update(
        client_id=url,
        client_name="Metadata document client",
        redirect_uris=["http://127.0.0.1:33418/callback"],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    worker = await echo_worker(oidc_provider.issuer + "/me")
    engine = await oauth_engine(
        worker=worker, mcp=f"  oauth: {{client_metadata: {{ca_file: '{ca.ca_file}'}}}}"
    )
    storage, _, data = await run_client(engine, metadata_url=url)
    assert data["sub"] == "alice" and data["user_id"] == ALICE
    assert storage.client is not None and storage.client.client_id == url
    assert await engine.store.mcp_oauth.client(url) is None  # nothing registered


async def test_typescript_sdk_client_with_its_oauth_provider_lists_tools(
    oauth_engine: Any, echo_worker: Any, oidc_provider: Any
) -> None:
    """The TypeScript SDK's OAuth client (headless provider): 401, registration, sign-in, consent, tools."""
    node = shutil.which("node")
    script = Path(__file__).parent / "mcp_oauth_ts" / "client.mjs"
    sdk = Path(__file__).parent / "mcp_conformance" / "node_modules" / "@modelcontextprotocol" / "sdk"
    if node is None or not sdk.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail("node or tests/mcp_conformance/node_modules missing")
        pytest.skip("node or tests/mcp_conformance/node_modules missing (npm ci there)")
    worker = await echo_worker(oidc_provider.issuer + "/me")
    engine = await oauth_engine(worker=worker)
    proc = await asyncio.create_subprocess_exec(
        node, str(script), engine.url + "/mcp", "http://127.0.0.1:33419/callback",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert "authorize" in first, first
        answer = await authorize_in_browser(engine, engine.new_browser(), first["authorize"], "alice")
        assert query(answer)["iss"] == engine.url
        proc.stdin.write(answer.encode() + b"\n")
        await proc.stdin.drain()
        last = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        await proc.wait()
    assert "tools" in last, last
    assert {"Echo_Say", "Echo_WhoAmI"} <= set(last["tools"]) and last["client_id"].startswith("mcpc_")


async def test_a_request_state_is_bound_to_the_oauth_client(oauth_engine: Any, echo_worker: Any) -> None:
    """2026-07-28: a requestState of alice's first OAuth client is refused from her second one."""
    worker = await echo_worker()
    engine = await oauth_engine(worker=worker)
    repo = engine.store.mcp_oauth
    tokens: dict[str, str] = {}
    for client in ("mcpc_first", "mcpc_second"):
        tokens[client] = f"mcpat_{client}_{os.urandom(8).hex()}"
        await repo.issue(access_token=tokens[client], refresh_token=None, family_id=None, client_id=client,
                         user_id=ALICE, resource=engine.url + "/mcp", scope="mcp:tools", access_ttl=300,
                         refresh_ttl=600)  # fmt: skip
        remember(tokens[client])

    async def call(client: str, state: str | None = None) -> tuple[int, Any]:
        meta = {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
        }
        params: dict[str, Any] = {"name": "Echo_WhoAmI", "arguments": {}, "_meta": meta}
        if state is not None:
            params |= {"requestState": state, "inputResponses": {"authorization": {"action": "accept"}}}
        headers = {"Authorization": f"Bearer {tokens[client]}", "MCP-Protocol-Version": "2026-07-28",
                   "Mcp-Method": "tools/call", "Mcp-Name": "Echo_WhoAmI"}  # fmt: skip
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
        async with engine.session.post(engine.url + "/mcp", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    status, data = await call("mcpc_first")
    assert status == 200 and data["result"]["resultType"] == "input_required", data
    status, data = await call("mcpc_second", data["result"]["requestState"])
    assert status == 400 and data["error"]["code"] == -32602, data
    assert data["error"]["message"] == "Invalid params: requestState is not valid for this request", data


async def _behind_prefix(engine: Any, proxy: Any) -> Any:
    """The engine as people and clients see it through ``proxy``: api.public_url is the proxy's /keyturn."""
    import dataclasses
    from types import SimpleNamespace

    import aiohttp

    from engine.wiring.settings import SETTINGS

    holder = engine.app[SETTINGS]
    api = dataclasses.replace(holder.current.config.api, public_url=proxy.url)
    await holder.swap(
        dataclasses.replace(holder.current, config=dataclasses.replace(holder.current.config, api=api))
    )
    origin = proxy.url[: -len("/keyturn")]

    def new_browser() -> aiohttp.ClientSession:
        browser = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[origin])
        )
        opened.append(browser)
        return browser

    opened: list[aiohttp.ClientSession] = []
    return SimpleNamespace(url=proxy.url, origin=origin, new_browser=new_browser, opened=opened)


@pytest.mark.parametrize("root_well_known", [False, True], ids=["strips-only", "root-well-known-passed"])
async def test_sdk_client_discovers_and_signs_in_behind_a_path_prefixed_public_url(
    oauth_engine: Any, echo_worker: Any, oidc_provider: Any, prefix_proxy: Any, root_well_known: bool
) -> None:
    """Behind a proxy serving the engine under /keyturn (api.public_url https-like with that path), the SDK
    client discovers the resource and authorization server (every URL in them under /keyturn), registers,
    signs alice in, consents and runs the tool. A proxy that only strips the prefix is discovered through
    {issuer}/.well-known/openid-configuration; one that also passes the root /.well-known/ on is discovered
    through RFC 8414/9728 path insertion (/.well-known/oauth-authorization-server/keyturn)."""
    worker = await echo_worker(oidc_provider.issuer + "/me")
    engine = await oauth_engine(worker=worker)
    proxy = await prefix_proxy(engine.url, "/keyturn", ("/.well-known/",) if root_well_known else ())
    behind = await _behind_prefix(engine, proxy)
    try:
        storage, answers, data = await run_client(behind)
    finally:
        for browser in behind.opened:
            await browser.close()
    assert data == {"sub": "alice", "user_id": ALICE, "token_sha256": data["token_sha256"]}
    assert storage.client is not None and storage.client.client_id.startswith("mcpc_")
    assert query(answers[0])["iss"] == proxy.url
    if root_well_known:
        assert "/.well-known/oauth-authorization-server/keyturn" in proxy.passed
        assert proxy.outside == []
    else:  # only the two root metadata probes MCP clients make first left the prefix, nothing else
        assert set(proxy.outside) <= {
            "/.well-known/oauth-authorization-server/keyturn",
            "/.well-known/openid-configuration/keyturn",
        }, proxy.outside
    async with engine.browser.get(proxy.url + "/.well-known/oauth-authorization-server") as resp:
        metadata = await resp.json()
    assert metadata["issuer"] == proxy.url
    for key in ("authorization_endpoint", "token_endpoint", "registration_endpoint", "revocation_endpoint"):
        assert metadata[key].startswith(proxy.url + "/oauth2/"), (key, metadata[key])
    inserted = behind.origin + "/.well-known/oauth-protected-resource/keyturn/mcp"
    for url in (proxy.url + "/.well-known/oauth-protected-resource/mcp", inserted):
        async with engine.browser.get(url) as resp:
            if url == inserted and not root_well_known:
                assert resp.status == 404  # outside the prefix: this proxy does not pass it on
                continue
            resource = await resp.json()
        assert resource["resource"] == proxy.url + "/mcp"
        assert resource["authorization_servers"] == [proxy.url]
