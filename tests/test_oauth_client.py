"""engine.oauth.client: the provider client against a real aiohttp provider on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine.errors import ProviderError
from engine.oauth.client import OAuthClient
from engine.providers.model import Provider
from engine.providers.schema import OAuth2Spec, PKCESpec, RequestSpec


class Upstream:
    """A tiny provider: records requests, answers from a queue."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answers: list[web.StreamResponse] = []
        self.issuer = ""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            {
                "path": request.path,
                "method": request.method,
                "headers": dict(request.headers),
                "body": body.decode(),
            }
        )
        if request.path == "/.well-known/openid-configuration":
            return web.json_response(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": self.issuer + "/auth",
                    "token_endpoint": self.issuer + "/token",
                    "jwks_uri": self.issuer + "/jwks",
                    "revocation_endpoint": self.issuer + "/revoke",
                    "userinfo_endpoint": self.issuer + "/me",
                }
            )
        if request.path == "/slow":
            await asyncio.sleep(5)
        if self.answers:
            return self.answers.pop(0)
        return web.json_response({"access_token": "at-1", "token_type": "Bearer", "expires_in": 60})

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    await up.server.start_server()
    up.issuer = up.url("").rstrip("/")
    yield up
    await up.server.close()


@pytest.fixture
async def client() -> AsyncIterator[OAuthClient]:
    async with aiohttp.ClientSession() as session:
        yield OAuthClient(session, timeout=1.0)


def provider(up: Upstream, **over: Any) -> Provider:
    token = over.pop("token_request", RequestSpec(endpoint=up.url("/token")))
    spec = OAuth2Spec(
        authorization_request=RequestSpec(
            endpoint=up.url("/auth"), params={"response_type": "code", "prompt": "x"}
        ),
        token_request=token,
        revocation_request=RequestSpec(endpoint=up.url("/revoke")),
        user_info=RequestSpec(endpoint=up.url("/me"), method="GET"),
        **over,
    )
    return Provider(id="p", template_id=None, client_id="cid", client_secret="csecret", oauth2=spec)


async def test_authorization_url(upstream: Upstream, client: OAuthClient) -> None:
    """The URL carries client_id, redirect_uri, state, delimited scopes, S256 challenge, nonce and extras."""
    p = provider(upstream, scope_delimiter=",")
    ep = await client.endpoints(p)
    url = client.authorization_url(
        p,
        ep,
        redirect_uri="http://127.0.0.1/cb",
        state="st",
        scopes=("a", "b"),
        code_verifier="v" * 43,
        nonce="nn",
    )
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["client_id"] == "cid" and q["state"] == "st" and q["scope"] == "a,b" and q["prompt"] == "x"
    assert q["code_challenge_method"] == "S256" and q["code_challenge"] == OAuthClient.code_challenge(
        "v" * 43
    )
    assert q["nonce"] == "nn" and q["response_type"] == "code"


async def test_pkce_disabled_and_scope_param(upstream: Upstream, client: OAuthClient) -> None:
    """PKCE off sends no challenge; scope_param renames the scope parameter."""
    p = provider(upstream, pkce=PKCESpec(enabled=False), scope_param="user_scope")
    url = client.authorization_url(
        p,
        await client.endpoints(p),
        redirect_uri="http://127.0.0.1/cb",
        state="s",
        scopes=("x",),
        code_verifier="v" * 43,
        nonce=None,
    )
    q = parse_qs(urlsplit(url).query)
    assert "code_challenge" not in q and q["user_scope"] == ["x"]


async def test_exchange_basic_auth(upstream: Upstream, client: OAuthClient) -> None:
    """The code exchange sends grant_type, code, redirect_uri, verifier and HTTP basic client auth."""
    p = provider(
        upstream,
        token_request=RequestSpec(endpoint=upstream.url("/token"), auth_method="client_secret_basic"),
    )
    ts = await client.exchange_code(p, code="c1", redirect_uri="http://127.0.0.1/cb", code_verifier="v" * 43)
    assert ts.access_token == "at-1" and ts.expires_in == 60
    req = upstream.requests[-1]
    form = parse_qs(req["body"])
    assert form["grant_type"] == ["authorization_code"] and form["code"] == ["c1"]
    assert form["code_verifier"] == ["v" * 43] and "client_secret" not in form
    assert req["headers"]["Authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert req["headers"]["Accept"] == "application/json"


async def test_exchange_post_and_json_body(upstream: Upstream, client: OAuthClient) -> None:
    """client_secret_post puts credentials in the form; a JSON body format sends JSON."""
    p = provider(
        upstream, token_request=RequestSpec(endpoint=upstream.url("/token"), auth_method="client_secret_post")
    )
    await client.exchange_code(p, code="c", redirect_uri="http://x/cb", code_verifier=None)
    form = parse_qs(upstream.requests[-1]["body"])
    assert form["client_id"] == ["cid"] and form["client_secret"] == ["csecret"]
    p = provider(
        upstream,
        token_request=RequestSpec(
            endpoint=upstream.url("/token"),
            auth_method="client_secret_basic",
            request_content_type="application/json",
        ),
    )
    await client.exchange_code(p, code="c", redirect_uri="http://x/cb", code_verifier=None)
    req = upstream.requests[-1]
    assert json.loads(req["body"])["code"] == "c" and req["headers"]["Authorization"].startswith("Basic ")


async def test_refresh_and_revoke(upstream: Upstream, client: OAuthClient) -> None:
    """Refresh posts the refresh token; revocation posts token and hint (RFC 7009)."""
    p = provider(upstream)
    await client.refresh(p, "rt-1")
    assert parse_qs(upstream.requests[-1]["body"])["refresh_token"] == ["rt-1"]
    upstream.answers.append(web.Response(status=200))
    assert await client.revoke(p, "rt-1", token_type_hint="refresh_token") is True
    form = parse_qs(upstream.requests[-1]["body"])
    assert form["token"] == ["rt-1"] and form["token_type_hint"] == ["refresh_token"]


async def test_userinfo_bearer(upstream: Upstream, client: OAuthClient) -> None:
    """User info is fetched with the access token as bearer."""
    upstream.answers.append(web.json_response({"sub": "alice"}))
    assert await client.userinfo(provider(upstream), "at-9") == {"sub": "alice"}
    assert upstream.requests[-1]["headers"]["Authorization"] == "Bearer at-9"


async def test_discovery_and_issuer_check(upstream: Upstream, client: OAuthClient) -> None:
    """Discovery fills endpoints and is cached; a mismatching issuer is refused."""
    spec = OAuth2Spec(issuer=upstream.issuer, discovery=True)
    p = Provider(id="oidc", template_id=None, client_id="c", client_secret=None, oauth2=spec)
    ep = await client.endpoints(p)
    assert ep.token == upstream.issuer + "/token" and ep.jwks_uri == upstream.issuer + "/jwks"
    await client.endpoints(p)
    assert sum(r["path"].startswith("/.well-known") for r in upstream.requests) == 1
    wrong = Provider(
        id="w",
        template_id=None,
        client_id="c",
        client_secret=None,
        oauth2=OAuth2Spec(issuer=upstream.issuer + "/other", discovery=True),
    )
    upstream.answers.append(web.json_response({"issuer": "https://evil.example"}))
    with pytest.raises(ProviderError, match="expected"):
        await client.endpoints(wrong)


async def test_network_failures(upstream: Upstream, client: OAuthClient) -> None:
    """A closed port is a retryable network error; a slow provider a retryable timeout."""
    p = provider(upstream, token_request=RequestSpec(endpoint="http://127.0.0.1:1/token"))
    with pytest.raises(ProviderError) as info:
        await client.exchange_code(p, code="c", redirect_uri="http://x/cb", code_verifier=None)
    assert info.value.kind == "network" and info.value.retryable
    p = provider(upstream, token_request=RequestSpec(endpoint=upstream.url("/slow")))
    with pytest.raises(ProviderError) as info:
        await client.exchange_code(p, code="c", redirect_uri="http://x/cb", code_verifier=None)
    assert info.value.kind == "timeout"


async def test_large_user_info_is_read_whole(upstream: Upstream, client: OAuthClient) -> None:
    """A 300 KB user info answer (under the 1 MiB cap) is read whole, not cut at the read buffer."""
    groups = [f"group-{i:06d}" for i in range(25_000)]
    upstream.answers.append(web.json_response({"sub": "alice", "groups": groups}))
    info = await client.userinfo(provider(upstream), "at-9")
    assert info["groups"] == groups


async def test_token_answer_past_64_kib_is_refused(upstream: Upstream, client: OAuthClient) -> None:
    """A token answer over 64 KiB (SECURITY.md 11) is a bad_response naming the limit, never its content."""
    upstream.answers.append(web.json_response({"access_token": "at-big", "pad": "x" * 70_000}))
    with pytest.raises(ProviderError) as info:
        await client.exchange_code(
            provider(upstream), code="c", redirect_uri="http://x/cb", code_verifier=None
        )
    assert info.value.kind == "bad_response"
    assert "is larger than the limit of 64 KiB (HTTP 200, application/json" in info.value.msg
    assert "at-big" not in info.value.msg
