"""engine.mcp.cimd: Client ID Metadata Documents fetched with an SSRF guard (SECURITY.md 37)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.config.model import ClientMetadataConfig
from engine.mcp.cimd import ClientMetadataError, ClientMetadataFetcher, address_allowed
from tests.plugins.mcp_oauth import authorize_in_browser, make_test_ca, query
from tests.test_mcp_authserver import authorize_url, pkce


def _json(data: dict[str, Any]) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(data)

    return handler


def fetcher(tmp_path: Path, *, development: bool = True, **cfg: Any) -> ClientMetadataFetcher:
    config = ClientMetadataConfig(**cfg)
    return ClientMetadataFetcher(lambda: config, development=lambda: development, base_dir=tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.7/client.json",
        "https://192.168.1.5/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00::1]/client.json",
        "https://[::ffff:10.0.0.1]/client.json",
        "https://0.0.0.0/client.json",
    ],
)
async def test_a_private_address_is_refused_before_any_connection(tmp_path: Path, url: str) -> None:
    """A client_id URL naming a private, link-local or unspecified address is refused, not fetched."""
    with pytest.raises(ClientMetadataError, match="not a public address"):
        await fetcher(tmp_path).fetch(url)


async def test_a_name_resolving_to_loopback_is_refused_outside_development(tmp_path: Path) -> None:
    """Outside development, https://localhost/... resolves to loopback and is refused by the resolver."""
    f = fetcher(tmp_path, development=False)
    try:
        with pytest.raises(ClientMetadataError, match="not public"):
            await f.fetch("https://localhost:9/client.json")
    finally:
        await f.close()


@pytest.mark.parametrize(
    "url", ["http://client.example/c.json", "https://client.example/", "https://u:p@client.example/c.json"]
)
def test_plain_http_root_paths_and_credentials_are_refused(tmp_path: Path, url: str) -> None:
    """http (off loopback in development), a root path, or credentials in the URL: refused."""
    with pytest.raises(ClientMetadataError):
        fetcher(tmp_path).check_url(url)


def test_public_addresses_only() -> None:
    """address_allowed: a global address yes; loopback only when allowed; private, multicast never."""
    assert address_allowed("93.184.216.34", loopback=False)
    assert not address_allowed("127.0.0.1", loopback=False) and address_allowed("127.0.0.1", loopback=True)
    assert not address_allowed("10.1.2.3", loopback=True) and not address_allowed("224.0.0.1", loopback=True)


async def test_document_checks_size_redirect_and_cache(tmp_path: Path, serve_https: Any) -> None:
    """Over the size cap, a redirect, a wrong client_id, a client secret: refused; a good one is cached."""
    ca = make_test_ca(tmp_path)
    hits: list[str] = []
    docs: dict[str, Any] = {}

    async def doc(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        name = request.match_info["name"]
        if name == "moved.json":
            raise web.HTTPFound("https://10.0.0.1/c.json")
        if name == "big.json":
            return web.Response(text=json.dumps({"pad": "x" * 10000}), content_type="application/json")
        return web.json_response(docs[name])

    app = web.Application()
    app.router.add_get("/{name}", doc)
    origin = await serve_https(ca, app)
    good = {
        "client_id": origin + "/good.json",
        "redirect_uris": ["http://127.0.0.1:5/cb"],
        "client_name": "Good",
    }
    docs["good.json"] = good
    docs["wrongid.json"] = {**good, "client_id": origin + "/other.json"}
    docs["secret.json"] = {**good, "client_id": origin + "/secret.json", "client_secret": "s"}
    f = fetcher(tmp_path, ca_file=str(ca.ca_file))
    try:
        refusals = [
            ("big.json", "larger than"),
            ("moved.json", "HTTP 302"),
            ("wrongid.json", "not its own URL"),
            ("secret.json", "auth method none|client_secret"),
        ]
        for name, reason in refusals:
            with pytest.raises(ClientMetadataError, match=reason):
                await f.fetch(f"{origin}/{name}")
        assert (await f.fetch(origin + "/good.json"))["client_name"] == "Good"
        assert (await f.fetch(origin + "/good.json"))["redirect_uris"] == ["http://127.0.0.1:5/cb"]
        assert hits.count("/good.json") == 1
        assert "/c.json" not in hits  # the redirect was not followed
    finally:
        await f.close()


async def test_an_untrusted_certificate_is_refused(tmp_path: Path, serve_https: Any) -> None:
    """Without the test CA in mcp.oauth.client_metadata.ca_file the TLS check fails: refused."""
    ca = make_test_ca(tmp_path)
    app = web.Application()
    app.router.add_get("/c.json", _json({}))
    origin = await serve_https(ca, app)
    f = fetcher(tmp_path)
    try:
        with pytest.raises(ClientMetadataError, match="cannot be fetched"):
            await f.fetch(origin + "/c.json")
    finally:
        await f.close()


@pytest.mark.e2e
async def test_engine_refuses_private_cimd_and_redirects_outside_the_document(
    oauth_engine: Any, serve_https: Any, tmp_path: Path
) -> None:
    """At /oauth2/authorize: a CIMD URL on a private address and a redirect_uri not in the document get a
    400 page (no redirect); the document's own redirect URI gets a code."""
    ca = make_test_ca(tmp_path)
    app = web.Application()
    doc: dict[str, Any] = {}
    app.router.add_get("/client.json", _json(doc))
    origin = await serve_https(ca, app)
    client_id = origin + "/client.json"
    doc.update(client_id=client_id, client_name="Doc client", redirect_uris=["http://127.0.0.1:41234/cb"])
    engine = await oauth_engine(mcp=f"  oauth: {{client_metadata: {{ca_file: '{ca.ca_file}'}}}}")
    browser = engine.new_browser()
    _, challenge = pkce()
    for bad_client, redirect in [
        ("https://10.0.0.1/client.json", None),
        (client_id, "http://127.0.0.1:9/other"),
    ]:
        url = authorize_url(engine, bad_client, challenge, **({"redirect_uri": redirect} if redirect else {}))
        async with browser.get(url, allow_redirects=False) as resp:
            assert resp.status == 400 and "Location" not in resp.headers, await resp.text()
    answer = await authorize_in_browser(engine, browser, authorize_url(engine, client_id, challenge))
    assert "code" in query(answer) and answer.startswith("http://127.0.0.1:41234/cb")
