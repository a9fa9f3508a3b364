"""``/metrics`` over HTTP, the API edge of :mod:`engine.metrics`: the handler (optional bearer token),
the timing middleware, a separate listener.

``setup_metrics(app)`` is what :func:`engine.api.app.create_app` calls when ``metrics.enabled``:
it puts a :class:`Metrics` on a fresh registry under ``METRICS``, subscribes it to the event
stream and serves ``/metrics`` on the main port, or, with ``metrics.address``, on its own listener;
the app's edge middleware (``engine.api.middleware.edge_middleware``) reports each request's timing to
``Metrics.observe_request``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from engine.api.jsonio import error_response
from engine.api.middleware import timing_middleware
from engine.errors import ConfigError, Unauthorized
from engine.metrics.events import MetricsSubscriber
from engine.metrics.registry import METRICS, Metrics
from engine.wiring.settings import EVENTS, SETTINGS

log = structlog.get_logger("keyturn.metrics")

BearerToken = Callable[[], str | None]
METRICS_RUNNER: web.AppKey[web.AppRunner] = web.AppKey("keyturn_metrics_runner", web.AppRunner)


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process/platform/GC collectors unless ``process`` is False."""
    registry = CollectorRegistry()
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def authorized(header: str, token: str | None) -> bool:
    """Whether the Authorization ``header`` carries ``token`` (constant time); no token set: any passes."""
    if not token:
        return True
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def metrics_handler(
    metrics: Metrics, bearer_token: BearerToken
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler serving the exposition of ``metrics.registry``; ``bearer_token()`` read per request."""

    async def handler(request: web.Request) -> web.Response:
        if not authorized(request.headers.get("Authorization", ""), bearer_token()):
            resp = error_response(
                Unauthorized("/metrics needs Authorization: Bearer with metrics.bearer_token")
            )
            resp.headers["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return resp
        body = generate_latest(metrics.registry)
        return web.Response(
            body=body, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}
        )

    return handler


def metrics_middleware(metrics: Metrics) -> Any:
    """``timing_middleware`` reporting to ``metrics.observe_request``."""
    return timing_middleware(metrics.observe_request)


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9100`` for IPv6) as (host, port); ConfigError at metrics.address."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"expected host:port, got {address!r}", path="metrics.address")
    return host, int(port)


def setup_metrics(app: web.Application, registry: CollectorRegistry | None = None) -> Metrics:
    """Add metrics to ``app`` (see the module docstring); returns the :class:`Metrics`."""
    config = app[SETTINGS].current.config.metrics
    metrics = Metrics(registry if registry is not None else new_registry())
    app[METRICS] = metrics
    app[EVENTS].subscribe(MetricsSubscriber(metrics))

    def token() -> str | None:
        return app[SETTINGS].current.config.metrics.bearer_token

    handler = metrics_handler(metrics, token)
    if config.address is None:
        app.router.add_get("/metrics", handler)
        return metrics
    host, port = parse_address(config.address)

    async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
        side = web.Application()
        side.router.add_get("/metrics", handler)
        runner = web.AppRunner(side, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        app[METRICS_RUNNER] = runner
        log.info("metrics_listening", address=f"{host}:{port}")
        try:
            yield
        finally:
            await runner.cleanup()

    app.cleanup_ctx.append(listener_ctx)
    return metrics
