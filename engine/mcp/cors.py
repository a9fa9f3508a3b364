"""CORS for ``/mcp`` and ``/mcp/{slug}``: browser-based MCP clients, from ``mcp.allowed_origins`` only.

Neither DESIGN.md nor the MCP transport (2025-11-25, 2026-07-28) asks for CORS; both ask for the
``Origin`` check against DNS rebinding, which stays as it is (``McpServer._check_request``). So the
behaviour is conservative: a preflight (``OPTIONS`` with ``Origin``) from an origin written in
``mcp.allowed_origins`` (default none) gets 204 with that origin echoed (never ``*``, never
``Access-Control-Allow-Credentials``: ``/mcp`` uses no cookies), the methods and the MCP headers; any
other origin gets 403. Answers to such an origin's requests (the 401 challenge too) carry
``Access-Control-Allow-Origin`` and expose ``Mcp-Session-Id``, ``MCP-Protocol-Version`` and
``WWW-Authenticate``. The engine's own origin needs none of this (same origin); loopback origins,
which the ``Origin`` check lets through on a loopback listener, get CORS only when listed.
"""

from __future__ import annotations

from aiohttp import web

from engine.config.model import Config
from engine.mcp.httperrors import answering_errors, refused
from engine.mcp.resource import endpoint_mode
from engine.wiring.settings import SETTINGS

ALLOW_METHODS = "POST, GET, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, Last-Event-ID, Mcp-Session-Id, MCP-Protocol-Version, "
    "Mcp-Method, Mcp-Name, Keyturn-User-Id, Arcade-User-ID"
)
EXPOSE_HEADERS = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After"
MAX_AGE = "600"


def listed_origin(config: Config, origin: str | None) -> str | None:
    """``origin`` when ``mcp.allowed_origins`` lists it (compared without a trailing slash, any case)."""
    if not origin:
        return None
    wanted = origin.rstrip("/").lower()
    return origin if any(o.rstrip("/").lower() == wanted for o in config.mcp.allowed_origins) else None


async def preflight(request: web.Request) -> web.StreamResponse:
    """``OPTIONS /mcp[/{slug}]``: 204 with the CORS headers for a listed origin, else 403 (404 when off)."""
    config = request.app[SETTINGS].current.config
    if endpoint_mode(config, request.path) is None:
        raise web.HTTPNotFound()
    origin = listed_origin(config, request.headers.get("Origin"))
    if origin is None:
        raise refused(403, "origin_not_allowed", "Forbidden: Origin is not allowed for /mcp")
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": MAX_AGE,
        "Vary": "Origin",
        "Cache-Control": "no-store",
    }
    return web.Response(status=204, headers=headers)


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Every answer on an MCP endpoint to a listed origin (middlewares' refusals too) can be read by it."""
    if request.method == "OPTIONS" or not (request.path == "/mcp" or request.path.startswith("/mcp/")):
        return
    config = request.app[SETTINGS].current.config
    origin = listed_origin(config, request.headers.get("Origin"))
    if origin is None or endpoint_mode(config, request.path) is None:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    response.headers.add("Vary", "Origin")


def mount_cors(app: web.Application, path: str = "/mcp") -> None:
    """The preflight routes for ``path`` and its gateways, and the headers on every answer there."""
    for route in (path, path + "/{slug}"):
        app.router.add_route("OPTIONS", route, answering_errors(preflight))  # errors as JSON-RPC
    app.on_response_prepare.append(on_prepare)
