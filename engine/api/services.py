"""The engine's long-lived services, opened and closed in one cleanup context each.

``services_ctx`` opens, in order: the keyring (refusing bad keys), the store (migrating an empty
database, refusing a stale schema), the OAuth client, flow waiting (with PostgreSQL LISTEN when
the store is PostgreSQL), the flow service, the refresher and its scheduler, and API key checks.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog
from aiohttp import web

from engine.api.auth import api_key_middleware, needs_api_key_or_mcp
from engine.api.state import (
    FLOWS,
    HTTP_SESSION,
    METRICS,
    READY_CHECKS,
    REVOKER,
    SERVICES,
    SETTINGS,
    STORE,
    TOOLS,
)
from engine.audit import Auditor, DatabaseSink
from engine.clock import now_utc
from engine.crypto.keys import keyring_from_config
from engine.emit import Emit
from engine.flows.revoke import Revoker
from engine.flows.service import FlowDeps, FlowService
from engine.flows.waiters import FlowWaiters, PgFlowListener
from engine.grants.writer import GrantWriter
from engine.lifecycle.refresh import RefreshDeps, Refresher
from engine.lifecycle.scheduler import Lifecycle
from engine.metrics.registry import Metrics
from engine.oauth.client import OAuthClient
from engine.ratelimit import SlidingWindowLimiter
from engine.tools.registry import ToolRegistry
from engine.tools.runner import ToolRunner

log = structlog.get_logger("keyturn.services")

AUDITOR: web.AppKey[Auditor] = web.AppKey("keyturn_auditor", Auditor)
REFRESHER: web.AppKey[Refresher] = web.AppKey("keyturn_refresher", Refresher)
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("keyturn_lifecycle", Lifecycle)
WAITERS: web.AppKey[FlowWaiters] = web.AppKey("keyturn_waiters", FlowWaiters)


class ApiKeys:
    """Keys from ``security.api_keys`` (compared in constant time) and keys in the store."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def verify(self, presented: str, *, limited: bool = False) -> Any | None:
        if len(presented) > 512:
            return None
        config = self.app[SETTINGS].current.config
        for i, key in enumerate(config.security.api_keys):
            if key and hmac.compare_digest(key.encode(), presented.encode()):
                return {"kind": "config", "name": f"security.api_keys[{i}]"}
        if presented.startswith("kt_"):
            return await self.app[STORE].api_keys.verify(presented, known_only=limited)
        return None


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    from engine.store.store import Store

    holder = app[SETTINGS]
    settings = holder.current
    config = settings.config
    keyring = keyring_from_config(config, settings.base_dir)
    store = await Store.open(
        config.storage.url or "",
        keyring,
        busy_timeout=float(config.storage.busy_timeout),
        pool_size=config.storage.pool_size,
    )
    app[STORE] = store
    oauth = OAuthClient(app[HTTP_SESSION], timeout=float(config.lifecycle.refresh_timeout))
    waiters = FlowWaiters()
    app[WAITERS] = waiters
    listener: PgFlowListener | None = None
    notify: Callable[[str], Any] | None = None
    url = config.storage.url or ""
    if url.startswith("postgresql"):
        listener = PgFlowListener(url, waiters)
        await listener.start()

        async def _notify(flow_id: str) -> None:
            try:
                await store.notify_flow(flow_id)
            except Exception as exc:
                log.warning("flow_notify_failed", error=type(exc).__name__)

        def notify(flow_id: str) -> Any:
            import asyncio

            return asyncio.ensure_future(_notify(flow_id))

    services: dict[str, Any] = app[SERVICES]
    auditor = Auditor(
        config.audit,
        await store.meta.installation_salt(),
        database=store.audit.write if "database" in config.audit.sinks else None,
        probe=store.ping,
    )
    for sink in auditor.sinks:
        if isinstance(sink, DatabaseSink):
            sink.start()
    app[AUDITOR] = auditor
    metrics = app.get(METRICS)
    emit = services.get("emit") or _emitter(auditor, metrics)
    writer = GrantWriter(store, oauth, lambda: holder.current.config)
    flows = FlowService(
        FlowDeps(
            store=store,
            oauth=oauth,
            waiters=waiters,
            config=lambda: holder.current.config,
            providers=lambda: holder.current.providers,
            public_url=lambda: holder.current.public_url,
            writer=writer,
            emit=emit,
            notify=notify,
            on_flow=metrics.on_flow if metrics is not None else None,
        )
    )
    app[FLOWS] = flows

    def emit_and_forget(event: str, *, outcome: str, **fields: Any) -> Any:
        if event in ("grant.needs_reauth", "grant.revoked", "grant.unreadable"):
            flows.forget_answers()  # a remembered "completed" answer is no longer true
        return emit(event, outcome=outcome, **fields)

    def on_unreadable(grant: Any) -> None:
        if metrics is not None:
            metrics.grant_unreadable(grant.provider_id)
        emit_and_forget(
            "grant.unreadable",
            outcome="error",
            user_id=grant.user_id,
            provider=grant.provider_id,
            reason="decrypt_failed",
        )

    store.on_unreadable = on_unreadable

    refresher = Refresher(
        RefreshDeps(
            store=store,
            oauth=oauth,
            config=lambda: holder.current.config,
            providers=lambda: holder.current.providers,
            writer=writer,
            emit=emit_and_forget,
            observe=metrics.observe_refresh if metrics is not None else None,
        )
    )
    app[REFRESHER] = refresher
    revoker = Revoker(
        store=store,
        oauth=oauth,
        providers=lambda: holder.current.providers,
        emit=emit,
        changed=flows.forget_answers,
    )
    app[REVOKER] = revoker

    async def gauges() -> None:
        if metrics is None:
            return
        metrics.set_grants(await store.grants.count_by_status())
        now = now_utc()
        oldest = await store.grants.oldest_due(now)
        metrics.observe_refresh_lag((now - oldest).total_seconds() if oldest else 0.0)

    registry = ToolRegistry(
        lambda: holder.current.config,
        app[HTTP_SESSION],
        on_worker=metrics.set_worker_up if metrics is not None else None,
    )
    app[TOOLS] = ToolRunner(
        registry,
        flows,
        refresher,
        lambda: holder.current.config,
        store=store,
        emit=emit,
        count=metrics.tool_executed if metrics is not None else None,
    )
    lifecycle = Lifecycle(
        refresher,
        store=store,
        config=lambda: holder.current.config,
        emit=emit_and_forget,
        retry_revocation=revoker.revoke,
        gauges=gauges,
        stop_grace=lambda: float(holder.current.config.api.shutdown_grace),
    )
    app[LIFECYCLE] = lifecycle

    def start_background() -> None:
        registry.start()
        lifecycle.start()

    if services.get("scheduler", True):
        if services.get("defer_background"):
            services["start_background"] = start_background  # the daemon calls it once it listens
        else:
            start_background()
    app[READY_CHECKS].append(("database", store.ping))
    try:
        yield
    finally:
        await lifecycle.stop()
        await registry.stop()
        if listener is not None:
            await listener.stop()
        waiters.notify_all()
        await auditor.aclose()
        await store.close()


def _emitter(auditor: Auditor, metrics: Metrics | None) -> Emit:
    """Audit every event; count the provider errors it reports."""

    def emit(event: str, *, outcome: str, **fields: Any) -> bool:
        if metrics is not None and event in PROVIDER_ERROR_EVENTS and fields.get("provider"):
            metrics.provider_error(str(fields["provider"]), str(fields.get("reason", "unknown")))
        return auditor.emit(event, outcome=outcome, **fields)

    return emit


PROVIDER_ERROR_EVENTS = frozenset({"flow.failed", "grant.refresh_failed", "grant.needs_reauth"})


def api_key_guard(app: web.Application) -> Any:
    config = app[SETTINGS].current.config
    limiter = SlidingWindowLimiter(
        config.security.rate_limiting.max_api_key_failures,
        config.security.rate_limiting.window_minutes * 60.0,
    )
    verifier = ApiKeys(app)

    async def denied(request: web.Request, reason: str) -> None:
        auditor = app.get(AUDITOR)
        source_ip = app[SETTINGS].current.client_address.of(request)
        log.info("api_key_denied", route=request.path[:100], reason=reason, source_ip=source_ip)
        if auditor is not None:
            event = "rate_limited" if reason == "rate_limited" else "api_key.denied"
            with contextlib.suppress(Exception):  # audit.required does not turn a 401 into a 503
                auditor.emit(event, outcome="denied", reason=reason, source_ip=source_ip)

    def needs_key(path: str) -> bool:
        return needs_api_key_or_mcp(path, mcp_auth=app[SETTINGS].current.config.mcp.auth)

    return api_key_middleware(
        lambda _r: verifier,
        limiter,
        lambda r: app[SETTINGS].current.client_address.of(r),
        denied,
        needs_key=needs_key,
    )


# GET requests that still change something: the flow link (a new state) and the provider's callback
_CHANGING_GETS = ("/v1/oauth/", "/login")


def audit_guard(app: web.Application) -> Any:
    """With ``audit.required``, refuse (503 audit_unavailable) a request that may change something
    while no audit sink can write, before its handler runs: nothing is changed unrecorded."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        auditor = app.get(AUDITOR)
        if (
            auditor is not None
            and auditor.config.required
            and (request.method not in ("GET", "HEAD", "OPTIONS") or request.path.startswith(_CHANGING_GETS))
        ):
            auditor.require_ready()
        response: web.StreamResponse = await handler(request)
        return response

    return middleware
