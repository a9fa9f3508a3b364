"""``/mcp`` and ``/mcp/{slug}`` as OAuth protected resources (RFC 9728, RFC 6750, RFC 8707).

:func:`endpoint_mode` says how an MCP path is authenticated (``mcp.auth``, or a gateway's own
``auth``). For ``oauth`` and ``jwt`` the guard middleware checks the bearer token before the MCP
server sees the request: an ``oauth`` token must be live and minted for exactly this endpoint's URL
(its resource); a ``jwt`` token must be signed by ``mcp.jwt.issuer`` for this audience. A request
without a valid token is answered 401 with ``WWW-Authenticate: Bearer resource_metadata="…",
scope="…"``; the token's user is the end user, and a ``Keyturn-User-Id`` header beside it is refused.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from engine.config.model import Config, GatewayConfig
from engine.identity import IDENTITY
from engine.wiring.services import STORE
from engine.wiring.settings import HTTP_SESSION, SETTINGS

log = structlog.get_logger("keyturn.mcp")

MCP_USER: web.RequestKey[str] = web.RequestKey("keyturn_mcp_user", str)
USER_HEADERS = ("Keyturn-User-Id", "Arcade-User-ID")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def bearer(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (RFC 6750 section 2.1), else None."""
    scheme, _, value = request.headers.get("Authorization", "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value or " " in value:
        return None
    return value


def gateway_of(config: Config, path: str) -> GatewayConfig | None:
    if not path.startswith("/mcp/"):
        return None
    slug = path[len("/mcp/") :]
    return next((g for g in config.mcp.gateways if g.slug == slug), None)


def endpoint_mode(config: Config, path: str) -> str | None:
    """``api_key | none | oauth | jwt`` for an MCP endpoint path, None for any other path."""
    if not config.mcp.enabled:
        return None
    if path == "/mcp":
        return config.mcp.auth
    gateway = gateway_of(config, path)
    if gateway is None:
        return None
    return gateway.auth or config.mcp.auth


def scopes_of(config: Config, mode: str) -> list[str]:
    from engine.mcp.authmodels import SCOPES

    if mode == "jwt" and config.mcp.jwt is not None:
        return list(config.mcp.jwt.scopes)
    return list(SCOPES)


def protected_resource_metadata(config: Config, public_url: str, path: str) -> dict[str, Any]:
    mode = endpoint_mode(config, path) or "oauth"
    issuer = config.mcp.jwt.issuer if mode == "jwt" and config.mcp.jwt else public_url
    gateway = gateway_of(config, path)
    data: dict[str, Any] = {
        "resource": public_url + path,
        "authorization_servers": [issuer],
        "scopes_supported": scopes_of(config, mode),
        "bearer_methods_supported": ["header"],
        "resource_name": (gateway.title if gateway and gateway.title else config.api.branding.name),
    }
    return data


def _challenge(config: Config, public_url: str, path: str, error: str | None) -> str:
    mode = endpoint_mode(config, path) or "oauth"
    parts = [f'resource_metadata="{public_url}/.well-known/oauth-protected-resource{path}"']
    scopes = scopes_of(config, mode)
    if scopes:
        parts.append(f'scope="{" ".join(scopes)}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ", ".join(parts)


def _refuse(status: int, word: str, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON-RPC error object like every /mcp refusal (``engine.mcp.httperrors``), the word in ``data``."""
    from engine.mcp import protocol as p
    from engine.mcp.httperrors import json_answer

    return json_answer(p.error(None, p.SERVER_ERROR, msg, {"error": word, "status": status}), status, headers)


def resource_guard(app: web.Application) -> Any:
    """Check OAuth / JWT bearer tokens on the MCP endpoints whose mode is ``oauth`` or ``jwt``.

    A middleware, also called as a guard step by ``engine.api.guards.RouteGuards`` (``(request, handler)``).
    """
    verifiers: dict[str, Any] = {}

    def jwt_verifier() -> Any:
        from engine.mcp.jwtcheck import JwtVerifier

        if "jwt" not in verifiers:
            verifiers["jwt"] = JwtVerifier(app[HTTP_SESSION], lambda: app[SETTINGS].current.config)
        return verifiers["jwt"]

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        settings = app[SETTINGS].current
        config = settings.config
        mode = endpoint_mode(config, request.path)
        if mode not in ("oauth", "jwt") or request.method == "OPTIONS":
            return await handler(request)
        public_url = settings.public_url
        resource = public_url + request.path
        presented = bearer(request)
        if presented is None:
            challenge = _challenge(config, public_url, request.path, None)
            return _refuse(401, "unauthorized", "sign in: this MCP server needs an OAuth access token",
                           {"WWW-Authenticate": challenge})  # fmt: skip
        user: str | None = None
        client: str | None = None
        if mode == "oauth":
            record = await app[STORE].mcp_oauth.find(presented, "access")
            if record is not None and record.live() and record.resource == resource:
                user, client = record.user_id, record.client_id
        else:
            claims = await jwt_verifier().verify(presented, resource)
            if claims is not None:
                user, client = claims["user"], claims.get("client_id")
        if user is None:
            log.info("mcp_token_refused", route=request.path[:100], mode=mode)
            challenge = _challenge(config, public_url, request.path, "invalid_token")
            return _refuse(401, "invalid_token", "the access token is not valid for this MCP server",
                           {"WWW-Authenticate": challenge})  # fmt: skip
        if any(request.headers.get(h) for h in USER_HEADERS):
            msg = "Keyturn-User-Id cannot be sent with an OAuth token: the token names the user"
            return _refuse(400, "user_header_refused", msg)
        request[IDENTITY] = {"kind": mode, "client_id": client, "at": time.time()}
        request[MCP_USER] = user
        return await handler(request)

    return middleware
