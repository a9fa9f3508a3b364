"""A small OAuth provider on 127.0.0.1 (port 0) for engine tests: `mini_provider` fixture.

It redirects at once with a code, checks PKCE and redirect_uri, answers the token endpoint in the
mode a test sets (``mode``) and refreshes as ``refresh_plan`` says (a list of behaviours consumed in
order: "ok", "rotate", "500", "429", "invalid_grant", "slow", "no_refresh"). Every token it issues
is in ``issued`` so tests can scan storage and logs for them.

OpenID Connect: ``/.well-known/openid-configuration`` and ``/jwks`` are served; when the flow asks
for ``openid`` the token answer carries an id_token signed with ``signing_key`` (and spoiled as
``id_token_fault`` says: "bad_sig", "nonce", "aud", "exp", "none", "new_kid"); ``iss_mode`` sets the
callback's ``iss`` ("ok", "wrong", "missing").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.plugins.token_scan import remember

USER = "alice@example.test"


class MiniProvider:
    """A small OAuth provider: redirects at once with a code, checks PKCE, records every call."""

    def __init__(self) -> None:
        self.codes: dict[str, dict[str, Any]] = {}
        self.token_calls: list[dict[str, str]] = []
        self.revocations: list[dict[str, str]] = []
        self.authorize_params: list[dict[str, str]] = []
        self.issued: list[str] = []
        self.mode = "json"
        self.revoke_status = 200
        self.refresh_plan: list[str] = []
        self.refresh_calls: list[str] = []  # refresh tokens presented, in order
        self.refresh_delay = 0.0
        self.refresh_in_flight = 0  # refresh calls being answered now, and the most at once
        self.refresh_max_in_flight = 0
        self.retry_after = "120"  # the Retry-After of a "429" step
        self.valid_refresh: set[str] = set()
        self.expires_in = 3600
        self.id_token_fault = ""
        self.iss_mode = "ok"
        self.userinfo_sub = ""
        self.userinfo_tokens: list[str] = []
        self.userinfo_status = 200
        self.strict_userinfo = False  # True: user info answers 401 for tokens not issued here or marked dead
        self.dead_tokens: set[str] = set()
        self.subject = "u-123"
        self.signing_key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        self.published = [self.signing_key]
        self.jwks_fetches = 0
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/jwks", self.jwks)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/userinfo", self.userinfo)
        app.router.add_post("/revoke", self.revoke)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))

    @property
    def issuer(self) -> str:
        return self.url("/").rstrip("/")

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer, "authorization_endpoint": self.url("/authorize"),
            "token_endpoint": self.url("/token"), "userinfo_endpoint": self.url("/userinfo"),
            "jwks_uri": self.url("/jwks"), "revocation_endpoint": self.url("/revoke"),
            "authorization_response_iss_parameter_supported": True,
        })  # fmt: skip

    async def jwks(self, request: web.Request) -> web.Response:
        self.jwks_fetches += 1
        return web.json_response(KeySet(self.published).as_dict(private=False))

    def id_token(self, nonce: str | None) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject,
            "aud": "cid",
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
        }
        fault = self.id_token_fault
        if fault == "nonce":
            claims["nonce"] = "not-the-flow-nonce"
        if fault == "aud":
            claims["aud"] = "someone-else"
        if fault == "exp":
            claims["exp"] = now - 3600
        key = self.signing_key
        if fault == "new_kid":
            key = RSAKey.generate_key(2048, parameters={"kid": "k2"})
            self.published = [self.signing_key, key]
        if fault == "none":
            head = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=").decode()
            body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
            return f"{head}.{body}."
        if fault == "bad_sig":
            key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)

    async def authorize(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        self.authorize_params.append(q)
        if q.get("deny"):
            target = (
                q["redirect_uri"]
                + "?"
                + urlencode({"error": "access_denied", "state": q["state"], "error_description": "<b>no</b>"})
            )
            raise web.HTTPFound(target)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "challenge": q.get("code_challenge"),
            "redirect_uri": q["redirect_uri"],
            "scope": q.get("scope", ""),
            "nonce": q.get("nonce"),
            "used": False,
        }
        answer = {"code": code, "state": q["state"]}
        if self.iss_mode == "ok":
            answer["iss"] = self.issuer
        elif self.iss_mode == "wrong":
            answer["iss"] = "https://evil.example"
        raise web.HTTPFound(q["redirect_uri"] + "?" + urlencode(answer))

    def _token(self) -> str:
        value = remember("tok-" + secrets.token_urlsafe(24))
        self.issued.append(value)
        return value

    async def token(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        self.token_calls.append(form)
        if self.mode == "slow":
            await asyncio.sleep(3)
        if self.mode == "html":
            return web.Response(text="<html>maintenance</html>", content_type="text/html")
        if self.mode == "500":
            return web.Response(status=500, text="oops")
        if self.mode == "error200":
            return web.json_response({"error": "bad_verification_code"})
        if self.mode == "big":
            return web.json_response({"access_token": self._token(), "pad": "x" * 70_000})
        if form.get("grant_type") == "refresh_token":
            return await self._refresh(form)
        info = self.codes.get(form.get("code", ""))
        if info is None or info["used"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        info["used"] = True
        verifier = form.get("code_verifier", "")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if digest != info["challenge"] or form.get("redirect_uri") != info["redirect_uri"]:
            return web.json_response({"error": "invalid_grant", "error_description": "pkce"}, status=400)
        access, refresh = self._token(), self._token()
        self.valid_refresh.add(refresh)
        if self.mode == "form":
            body = urlencode(
                {"access_token": access, "scope": info["scope"].replace(" ", ","), "token_type": "bearer"}
            )
            return web.Response(text=body, content_type="application/x-www-form-urlencoded")
        answer: dict[str, Any] = {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.expires_in,
            "token_type": "Bearer",
            "scope": info["scope"],
        }
        if "openid" in info["scope"].split():
            answer["id_token"] = self.id_token(info["nonce"])
        return web.json_response(answer)

    async def _refresh(self, form: dict[str, Any]) -> web.StreamResponse:
        presented = str(form.get("refresh_token", ""))
        self.refresh_calls.append(presented)
        step = self.refresh_plan.pop(0) if self.refresh_plan else "ok"
        self.refresh_in_flight += 1
        self.refresh_max_in_flight = max(self.refresh_max_in_flight, self.refresh_in_flight)
        try:
            if self.refresh_delay:
                await asyncio.sleep(self.refresh_delay)
        finally:
            self.refresh_in_flight -= 1
        if step == "slow":
            await asyncio.sleep(5)
        if step == "500":
            return web.Response(status=500, text="upstream down")
        if step == "429":
            return web.json_response(
                {"error": "slow_down"}, status=429, headers={"Retry-After": self.retry_after}
            )
        if step == "invalid_grant" or presented not in self.valid_refresh:
            return web.json_response({"error": "invalid_grant"}, status=400)
        body: dict[str, Any] = {
            "access_token": self._token(),
            "expires_in": self.expires_in,
            "token_type": "Bearer",
        }
        if step == "rotate":
            self.valid_refresh.discard(presented)
            new = self._token()
            self.valid_refresh.add(new)
            body["refresh_token"] = new
        return web.json_response(body)

    async def userinfo(self, request: web.Request) -> web.Response:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.userinfo_tokens.append(presented)
        if self.strict_userinfo and (presented not in self.issued or presented in self.dead_tokens):
            return web.json_response({"error": "invalid_token"}, status=401)
        if self.userinfo_status != 200:
            return web.json_response({"error": "invalid_token"}, status=self.userinfo_status)
        return web.json_response({"sub": self.userinfo_sub or self.subject, "email": USER})

    async def revoke(self, request: web.Request) -> web.Response:
        self.revocations.append(dict(await request.post()))
        return web.Response(status=self.revoke_status)


def acme_config(p: MiniProvider, extra: str = "", security: str = "") -> str:
    sec = security or "api_keys: ['test-api-key-0123456789abcdef']"
    return f"""
security: {{{sec}, next_uri_allowlist: ['https://app.example/']}}
auth:
  providers:
    - id: acme
      client_id: cid
      client_secret: csecret
      oauth2:
        authorization_request: {{endpoint: "{p.url("/authorize")}", params: {{response_type: code}}}}
        token_request: {{endpoint: "{p.url("/token")}", auth_method: client_secret_post}}
        revocation_request: {{endpoint: "{p.url("/revoke")}"}}
        user_info: {{endpoint: "{p.url("/userinfo")}", method: GET}}
{extra}
"""


def oidc_config(p: MiniProvider, extra: str = "") -> str:
    """An OpenID provider entry found by discovery (issuer only)."""
    return f"""
security: {{api_keys: ['test-api-key-0123456789abcdef']}}
auth:
  providers:
    - id: acme
      client_id: cid
      client_secret: csecret
      oauth2:
        issuer: "{p.issuer}"
        discovery: true
        default_scopes: [openid]
        token_request: {{auth_method: client_secret_basic}}
{extra}
"""


@pytest.fixture
async def mini_provider() -> AsyncIterator[MiniProvider]:
    p = MiniProvider()
    await p.server.start_server()
    yield p
    await p.server.close()
