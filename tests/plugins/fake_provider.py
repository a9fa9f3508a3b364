"""A fake OAuth 2 provider on 127.0.0.1 (port 0) for fault injection and provider quirks: ``fake_provider``.

``fake_provider`` (function scope, async) yields a started :class:`FakeProvider`. Endpoints (``p.url(path)``):

- ``GET /authorize``: redirects at once to ``redirect_uri`` with ``code`` + ``state`` (+ ``iss`` when
  ``send_iss``); with ``authorize_error`` set it redirects with that ``error`` instead.
- ``POST /token``: ``authorization_code`` (code once, redirect_uri and PKCE S256 checked) and
  ``refresh_token``; the client authenticates with HTTP Basic or client_id/client_secret in the form
  (``client_id`` / ``client_secret`` attributes), else 401 invalid_client.
- ``GET /userinfo`` (Bearer, live access tokens only), ``POST /revoke`` (RFC 7009), ``POST /introspect``
  (RFC 7662), ``GET /.well-known/oauth-authorization-server`` (RFC 8414).

How /token answers: ``token_answers`` is a queue of modes consumed one per call; when empty ``token_mode`` is
used. Modes: ``"json"`` (standard), ``"form"`` (GitHub: form-encoded, comma-separated scope, no expires_in),
``"slack"`` (``{"ok": true, ..., "authed_user": {access_token, refresh_token, scope, expires_in}}``),
``"slack_error"`` (HTTP 200 ``{"ok": false, "error": "invalid_code"}``), ``"invalid_grant"`` (400),
``"500"``, ``"429"`` (``Retry-After: retry_after``), ``"slow"`` (waits ``slow_seconds`` then answers json),
``"no_expires"`` (json without expires_in), ``"rotate_then_slow"`` (issues and rotates at once, then waits
``slow_seconds`` before answering json: a provider that has committed the rotation), ``"redirect_json"``
(the standard JSON tokens, but with HTTP 302 and a ``Location``). ``rotate_refresh`` (default True): a
refresh answers a new refresh token and kills the old one; False: the answer has no refresh_token and the
old one stays valid. ``expires_in`` sets the lifetime announced (default 3600; any JSON value, e.g.
``float("nan")``, ``-5``, ``1e20`` or ``"soon"``, is sent as given). ``live_refresh_token()`` makes a
refresh token the provider accepts (to seed a stored grant); ``engine_config(p)`` is an engine.yaml
``auth.providers`` entry (id ``fake``) for it.

Records: ``requests`` has every request received as :class:`Recorded` (method, path, headers, query, form,
basic_auth); ``token_requests``, ``revocations`` and ``introspections`` filter it. ``issued_tokens`` lists
every token issued, in order (also given to tests.plugins.token_scan for the end-of-suite scan).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.plugins.token_scan import remember


@dataclass
class Recorded:
    """One request the fake provider received."""

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    form: dict[str, str]
    basic_auth: tuple[str, str] | None = None

    def __repr__(self) -> str:  # forms carry codes, verifiers and secrets: never print them
        return f"Recorded({self.method} {self.path}, form keys={sorted(self.form)})"


@dataclass
class _Code:
    redirect_uri: str
    scope: str
    challenge: str | None
    used: bool = False


@dataclass
class FakeProvider:
    """State and knobs of one fake provider; see the module docstring."""

    client_id: str = "fake-client"
    client_secret: str = "fake-secret"
    token_mode: str = "json"
    token_answers: list[str] = field(default_factory=list)
    rotate_refresh: bool = True
    expires_in: Any = 3600
    retry_after: str = "30"
    slow_seconds: float = 5.0
    send_iss: bool = True
    authorize_error: str | None = None
    revoke_status: int = 200
    userinfo: dict[str, Any] = field(default_factory=lambda: {"sub": "u-1", "email": "alice@example.test"})
    requests: list[Recorded] = field(default_factory=list)
    issued_tokens: list[str] = field(default_factory=list)
    _codes: dict[str, _Code] = field(default_factory=dict, repr=False)
    _live_access: set[str] = field(default_factory=set, repr=False)
    _live_refresh: dict[str, str] = field(default_factory=dict, repr=False)  # refresh token -> scope
    server: TestServer | None = field(default=None, repr=False)

    def url(self, path: str) -> str:
        assert self.server is not None, "fake provider not started"
        return str(self.server.make_url(path))

    @property
    def issuer(self) -> str:
        return self.url("/").rstrip("/")

    def _only(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    def live_refresh_token(self, scope: str = "read") -> str:
        """A refresh token this provider accepts (for a grant a test stores directly)."""
        token = self._new_token("rt")
        self._live_refresh[token] = scope
        return token

    def live_refresh_tokens(self) -> set[str]:
        return set(self._live_refresh)

    @property
    def token_requests(self) -> list[Recorded]:
        return self._only("/token")

    @property
    def revocations(self) -> list[Recorded]:
        return self._only("/revoke")

    @property
    def introspections(self) -> list[Recorded]:
        return self._only("/introspect")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/.well-known/oauth-authorization-server", self._metadata)
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        app.router.add_get("/userinfo", self._userinfo)
        app.router.add_post("/revoke", self._revoke)
        app.router.add_post("/introspect", self._introspect)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        form = {k: str(v) for k, v in (await request.post()).items()} if request.method == "POST" else {}
        self.requests.append(
            Recorded(
                request.method,
                request.path,
                dict(request.headers),
                dict(request.query),
                form,
                _basic(request),
            )
        )
        response: web.StreamResponse = await handler(request)
        return response

    def _new_token(self, prefix: str) -> str:
        value = remember(f"{prefix}-{secrets.token_urlsafe(24)}")
        self.issued_tokens.append(value)
        return value

    async def _metadata(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.issuer, "authorization_endpoint": self.url("/authorize"),
            "token_endpoint": self.url("/token"), "userinfo_endpoint": self.url("/userinfo"),
            "revocation_endpoint": self.url("/revoke"), "introspection_endpoint": self.url("/introspect"),
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": self.send_iss,
        })  # fmt: skip

    async def _authorize(self, request: web.Request) -> web.Response:
        q = request.query
        answer = {"state": q.get("state", "")}
        if self.authorize_error:
            answer["error"] = self.authorize_error
        else:
            code = secrets.token_urlsafe(16)
            self._codes[code] = _Code(q["redirect_uri"], q.get("scope", ""), q.get("code_challenge"))
            answer["code"] = code
        if self.send_iss:
            answer["iss"] = self.issuer
        raise web.HTTPFound(q["redirect_uri"] + "?" + urlencode(answer))

    def _client_ok(self, request: web.Request, form: dict[str, str]) -> bool:
        auth = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
        return auth == (self.client_id, self.client_secret)

    async def _token(self, request: web.Request) -> web.Response:
        form = self.requests[-1].form
        mode = self.token_answers.pop(0) if self.token_answers else self.token_mode
        if mode == "slow":
            await asyncio.sleep(self.slow_seconds)
        if mode == "500":
            return web.Response(status=500, text="upstream trouble")
        if mode == "429":
            return web.json_response(
                {"error": "slow_down"}, status=429, headers={"Retry-After": self.retry_after}
            )
        if mode == "slack_error":
            return web.json_response({"ok": False, "error": "invalid_code"})
        if not self._client_ok(request, form):
            return web.json_response({"error": "invalid_client"}, status=401)
        if mode == "invalid_grant":
            return _invalid_grant("refused by the test")
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = self._codes.get(form.get("code", ""))
            if code is None or code.used:
                return _invalid_grant("unknown or used code")
            code.used = True
            if form.get("redirect_uri") != code.redirect_uri:
                return _invalid_grant("redirect_uri mismatch")
            if code.challenge is not None and _s256(form.get("code_verifier", "")) != code.challenge:
                return _invalid_grant("PKCE verification failed")
            scope, rotate = code.scope, True
        elif grant == "refresh_token":
            presented = form.get("refresh_token", "")
            if presented not in self._live_refresh:
                return _invalid_grant("unknown refresh token")
            scope, rotate = self._live_refresh[presented], self.rotate_refresh
            if rotate:
                del self._live_refresh[presented]
        else:
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        access = self._new_token("at")
        self._live_access.add(access)
        refresh = self._new_token("rt") if rotate else None
        if refresh is not None:
            self._live_refresh[refresh] = scope
        if mode == "rotate_then_slow":
            await asyncio.sleep(self.slow_seconds)
        return self._answer(mode, access, refresh, scope)

    def _answer(self, mode: str, access: str, refresh: str | None, scope: str) -> web.Response:
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "scope": scope}
        if refresh is not None:
            body["refresh_token"] = refresh
        if mode not in ("no_expires", "form"):
            body["expires_in"] = self.expires_in
        if mode == "form":
            body["scope"] = scope.replace(" ", ",")
            body["token_type"] = "bearer"
            return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")
        if mode == "slack":
            bot = self._new_token("xoxb")
            body = {"ok": True, "access_token": bot, "token_type": "bot", "authed_user": {"id": "U1", **body}}
        if mode == "redirect_json":
            return web.json_response(body, status=302, headers={"Location": self.url("/elsewhere")})
        return web.json_response(body)

    def _bearer(self, request: web.Request) -> str:
        return request.headers.get("Authorization", "").removeprefix("Bearer ")

    async def _userinfo(self, request: web.Request) -> web.Response:
        if self._bearer(request) not in self._live_access:
            return web.json_response({"error": "invalid_token"}, status=401)
        return web.json_response(self.userinfo)

    async def _revoke(self, request: web.Request) -> web.Response:
        token = self.requests[-1].form.get("token", "")
        self._live_access.discard(token)
        self._live_refresh.pop(token, None)
        return web.Response(status=self.revoke_status)

    async def _introspect(self, request: web.Request) -> web.Response:
        token = self.requests[-1].form.get("token", "")
        if token in self._live_access:
            return web.json_response(
                {"active": True, "token_type": "access_token", "client_id": self.client_id}
            )
        if token in self._live_refresh:
            return web.json_response(
                {"active": True, "token_type": "refresh_token", "client_id": self.client_id}
            )
        return web.json_response({"active": False})


def _basic(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def _invalid_grant(why: str) -> web.Response:
    return web.json_response({"error": "invalid_grant", "error_description": why}, status=400)


def engine_config(p: FakeProvider, *, provider_id: str = "fake") -> str:
    """An ``auth.providers`` block (engine.yaml) for ``p``: client_secret_basic, revocation, no discovery."""
    return f"""
auth:
  providers:
    - id: {provider_id}
      client_id: {p.client_id}
      client_secret: {p.client_secret}
      oauth2:
        authorization_request: {{endpoint: "{p.url("/authorize")}"}}
        token_request: {{endpoint: "{p.url("/token")}"}}
        revocation_request: {{endpoint: "{p.url("/revoke")}"}}
"""


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    provider = FakeProvider()
    provider.server = TestServer(provider.app(), host="127.0.0.1", port=0)
    await provider.server.start_server()
    try:
        yield provider
    finally:
        await provider.server.close()
