"""The aiohttp application: one ``cleanup_ctx`` per long-lived resource, typed keys, routes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from engine import __version__
from engine.api import health
from engine.api.middleware import error_middleware, request_id_middleware, security_headers_middleware
from engine.api.state import HTTP_SESSION, READY_CHECKS, SERVICES, SETTINGS, Settings, SettingsHolder


def create_app(settings: Settings, *, services: bool = True) -> web.Application:
    """Build the engine's application for ``settings`` (nothing is opened until it starts).

    ``services=False`` leaves out the database and everything on it (health endpoints only).
    """
    app = web.Application(
        middlewares=[request_id_middleware, error_middleware, security_headers_middleware],
        client_max_size=settings.config.api.max_body_bytes,
    )
    app[SETTINGS] = SettingsHolder(settings)
    app[READY_CHECKS] = []
    app[SERVICES] = {}
    app.cleanup_ctx.append(http_session_ctx)
    app.router.add_routes(health.routes)
    if settings.config.metrics.enabled:
        from engine.metrics.http import setup_metrics

        setup_metrics(app)  # /metrics (or its own listener) and the timing middleware, outermost
    if services:
        from engine.api import auth_routes, oauth_routes, tool_routes
        from engine.api.services import api_key_guard, audit_guard, services_ctx

        app.middlewares.append(api_key_guard(app))
        app.middlewares.append(audit_guard(app))
        app.cleanup_ctx.append(services_ctx)
        app.router.add_routes(auth_routes.routes)
        app.router.add_routes(oauth_routes.routes)
        app.router.add_routes(tool_routes.routes)
        from engine.api import login_routes

        login_routes.setup(app)  # /login, /logout, /login/verify, /connections
        if settings.config.mcp.enabled:
            from engine.mcp.engine_backend import engine_mcp_server

            engine_mcp_server(app, key_check=False).setup(app)  # the API key middleware above covers /mcp
    return app


# An idle outgoing connection is dropped before the peer's own keep-alive timeout would close it
# (uvicorn, so every arcade-serve worker, closes after 5 s; Node and Apache too): reusing one just as
# the peer closes it gets "connection reset" and fails the call. aiohttp's default is 15 s.
IDLE_CONNECTION_S = 4.0


async def http_session_ctx(app: web.Application) -> AsyncIterator[None]:
    """One outgoing HTTP session (providers, workers, upstream MCP) for the app's lifetime."""
    session = aiohttp.ClientSession(
        headers={"User-Agent": f"Keyturn/{__version__}"},
        timeout=aiohttp.ClientTimeout(total=30, connect=10),
        connector=aiohttp.TCPConnector(limit=200, limit_per_host=64, keepalive_timeout=IDLE_CONNECTION_S),
    )
    app[HTTP_SESSION] = session
    yield
    await session.close()
