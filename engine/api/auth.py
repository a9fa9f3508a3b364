"""API keys at the edge: every ``/v1/*`` route but the browser endpoints needs ``Authorization: Bearer``.

A missing or wrong key answers 401 JSON, is audited (never with the key), and repeated failures from one
address are rate limited (SECURITY 27). Only failures are limited: the key is checked first and a valid
key always passes, also from an address over its limit (behind a proxy every application may share one
address). For an address over its limit the verifier is asked with ``limited=True`` and answers
without a database query per request, so failed attempts cannot make checking keys expensive.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from engine.api.jsonio import error_response
from engine.api.spec import unscoped
from engine.errors import KeyturnError, RateLimited, Unauthorized
from engine.identity import IDENTITY
from engine.tools.access import CURRENT_CALLER, Caller

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiKeyVerifier(Protocol):
    async def verify(self, presented: str, *, limited: bool = False) -> Any | None:
        """An identity for a valid key, None for an unknown or revoked one.

        ``limited``: the caller's address is over its failure limit; answer from memory (at most a
        bounded, shared amount of database work), never one query per request.
        """


class FailureLimiter(Protocol):
    """Failed attempts per address: ``SlidingWindowLimiter`` (one process) or ``SharedLimiter`` (all)."""

    def retry_after(self, key: str) -> float: ...

    def hit(self, key: str, *, what: str = ...) -> object: ...  # raises RateLimited; may be awaitable


# paths under /v1 a browser opens (no API key): the flow link and the provider's redirect back
PUBLIC_PREFIXES = ("/v1/oauth/start/", "/v1/oauth/callback")
PUBLIC_EXACT = frozenset({"/v1/health", "/v1/openapi.json"})

Denied = Callable[[web.Request, str], Awaitable[None]]  # (request, reason word) -> audit
# (request, error, extra headers) -> the answer; JSON {code, error, msg} unless a path speaks another shape
Answer = Callable[[web.Request, KeyturnError, dict[str, str] | None], web.StreamResponse]


def rest_answer(
    request: web.Request, exc: KeyturnError, headers: dict[str, str] | None
) -> web.StreamResponse:
    return error_response(exc, headers=headers)


def needs_api_key(path: str) -> bool:
    """True for every API route; an org-scoped path (``/v1/orgs/{o}/projects/{p}/X``) as ``/v1/X``."""
    path = unscoped(path)
    if path.startswith("/api/v1/"):
        return True
    if not path.startswith("/v1/") or path in PUBLIC_EXACT:
        return False
    if path.startswith(PUBLIC_PREFIXES):
        return False
    # /v1/oauth/{provider}/callback
    parts = path.split("/")
    return not (len(parts) == 5 and parts[2] == "oauth" and parts[4] == "callback")


def needs_api_key_or_mcp(path: str, *, mcp_auth: str, mcp_path: str = "/mcp") -> bool:
    """``needs_api_key`` plus the MCP endpoint, which needs the key unless ``mcp.auth: none``."""
    if path == mcp_path:
        return mcp_auth != "none"
    return needs_api_key(path)


def bearer(request: web.Request) -> str | None:
    """The API key: ``Authorization: Bearer <key>``, or the bare key, which is what arcadepy sends."""
    header = request.headers.get("Authorization", "").strip()
    scheme, sep, value = header.partition(" ")
    if not sep:
        return header or None
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_preflight(request: web.Request) -> bool:
    """A CORS preflight: a browser never sends credentials with it, so it is not a failed key attempt; its
    route answers it (the MCP endpoints' allow-list, ``engine.mcp.cors``) or aiohttp's 405 does."""
    return request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers


class ApiKeyCheck:
    """The API key check of one request (see the module docstring), as a guard step."""

    def __init__(
        self,
        verifier_of: Callable[[web.Request], ApiKeyVerifier | None],
        failures: FailureLimiter,
        client_ip: Callable[[web.Request], str],
        on_denied: Denied | None = None,
        *,
        answer: Answer = rest_answer,
    ) -> None:
        self.verifier_of = verifier_of
        self.failures = failures
        self.client_ip = client_ip
        self.on_denied = on_denied
        self.answer = answer

    async def refusal(self, request: web.Request) -> web.StreamResponse | None:
        """None when the request carries a valid key (its identity is then ``request[IDENTITY]``),
        else the answer refusing it (401, or 429 for an address over its failure limit)."""
        ip = self.client_ip(request)
        wait = self.failures.retry_after(ip)
        presented = bearer(request)
        verifier = self.verifier_of(request)
        identity = None
        if presented is not None and verifier is not None:
            identity = await verifier.verify(presented, limited=wait > 0)
        if identity is None and wait > 0:
            if self.on_denied is not None:
                await self.on_denied(request, "rate_limited")
            limited = RateLimited("too many failed API key attempts from this address", retry_after=wait)
            return self.answer(request, limited, None)
        if identity is None:
            try:
                counted = self.failures.hit(ip, what="failed API key attempts")
                if inspect.isawaitable(counted):  # counted in the database (SharedLimiter)
                    await counted
            except RateLimited as exc:  # over the limit, as another process counted
                if self.on_denied is not None:
                    await self.on_denied(request, "rate_limited")
                return self.answer(request, exc, None)
            if self.on_denied is not None:
                await self.on_denied(request, "missing" if presented is None else "invalid")
            msg = (
                "missing API key: send Authorization: Bearer <key>"
                if presented is None
                else "invalid API key"
            )
            return self.answer(request, Unauthorized(msg), {"WWW-Authenticate": 'Bearer realm="keyturn"'})
        request[IDENTITY] = identity
        return None


async def as_caller(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run ``handler`` with ``CURRENT_CALLER`` naming the request's API key (reset afterwards, so the
    next request on this connection starts without it)."""
    identity = request.get(IDENTITY)
    token = CURRENT_CALLER.set(identity if isinstance(identity, Caller) else None)
    try:
        return await handler(request)
    finally:
        CURRENT_CALLER.reset(token)


def api_key_middleware(
    verifier_of: Callable[[web.Request], ApiKeyVerifier | None],
    failures: FailureLimiter,
    client_ip: Callable[[web.Request], str],
    on_denied: Denied | None = None,
    *,
    needs_key: Callable[[str], bool] = needs_api_key,
    answer: Answer = rest_answer,
) -> Any:
    """Check the API key on every path for which ``needs_key(path)`` is true (default ``needs_api_key``)."""
    check = ApiKeyCheck(verifier_of, failures, client_ip, on_denied, answer=answer)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not needs_key(request.path) or is_preflight(request):
            return await handler(request)
        refused = await check.refusal(request)
        if refused is not None:
            return refused
        return await as_caller(request, handler)

    return middleware
