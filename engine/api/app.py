"""The aiohttp application: the composition root's contexts (:mod:`engine.wiring.services`), routes.

The API's routes are declared tables (:mod:`engine.api.spec`), kept in ``API_TABLES`` for
``/v1/openapi.json``.
"""

from __future__ import annotations

from aiohttp import web

from engine.api import health, openapi
from engine.api.middleware import Guard, edge_middleware
from engine.api.openapi import API_TABLES
from engine.api.spec import Routes
from engine.wiring.options import WiringOptions, prepare
from engine.wiring.services import http_session_ctx, install
from engine.wiring.settings import Settings


def create_app(
    settings: Settings, *, services: bool = True, options: WiringOptions | None = None
) -> web.Application:
    """Build the engine's application for ``settings`` (nothing is opened until it starts).

    ``services=False`` leaves out the database and everything on it (health endpoints only);
    ``options`` says how the services open (no background jobs, a hook per opened resource).
    """
    app = web.Application(client_max_size=settings.config.api.max_body_bytes)
    prepare(app, settings, options or WiringOptions())
    app.router.add_routes(health.routes)
    tables = app[API_TABLES] = [health.v1_routes, openapi.routes]
    observe = None
    if settings.config.metrics.enabled:
        from engine.api.metrics import setup_metrics

        observe = setup_metrics(app).observe_request  # /metrics (or its own listener); timing in the edge
    if not services:
        app.cleanup_ctx.append(http_session_ctx)
        _add_tables(app, tables)
        app.middlewares.append(edge_middleware(_no_guard, observe))
        return app
    from engine.api import auth_routes, oauth_routes, tool_routes
    from engine.mcp.engine_backend import mount_mcp

    install(app)
    from engine.wiring.webhooks import webhooks_ctx

    app.cleanup_ctx.append(webhooks_ctx)  # the webhook deliverer, on the store
    mount_mcp(app)  # /mcp (answers 404 while mcp.enabled is false) and its context, last
    from engine.api import approval_routes, connect_routes, login_routes

    tables += [
        auth_routes.routes,
        oauth_routes.routes,
        tool_routes.routes,
        approval_routes.routes,
        connect_routes.api_routes,
    ]
    _add_tables(app, tables)

    login_routes.setup(app)  # /login, /logout, /login/verify, /connections
    from engine.api import mcp_oauth_routes
    from engine.api.guards import RouteGuards
    from engine.mcp.resource import resource_guard

    mcp_oauth_routes.setup(app)  # /.well-known/oauth-*, /oauth2/*
    app.router.add_routes(approval_routes.pages)  # /approvals/{id}
    app.router.add_routes(connect_routes.routes)  # the connect link's pages, /connect/{token}
    # one middleware: request id, errors, security headers, timing, and each route's guards (API key,
    # audit.required, OAuth / JWT bearer tokens on /mcp[/{slug}]) chosen per route at startup
    guards = RouteGuards(app, resource_guard(app))
    app.middlewares.append(edge_middleware(guards.guard_of, observe))
    return app


def _no_guard(_request: web.Request) -> Guard | None:
    return None


def _add_tables(app: web.Application, tables: list[Routes]) -> None:
    for table in tables:
        table.add_to(app)
