"""The composition root: one cleanup context per long-lived resource, each yielding into its typed key.

``CONTEXTS`` opens, in order: the outgoing HTTP session, the store (keyring checked, schema created
or checked), flow waiters, the PostgreSQL listener (PostgreSQL only), the auditor, the OAuth client
(and the grant writer on it), the flow service, the revoker, the refresher, the scheduler (lifecycle)
and the tool runner; the MCP server (``engine.mcp.engine_backend.mcp_ctx``) comes last. aiohttp
closes, in reverse, exactly the contexts that were entered, so a failure half-way (``audit.file`` in a
missing folder) still closes the store.
The server (``engine.api.app.create_app``) and the CLI (:func:`open_services`) use the same contexts.

Each context that keeps something built from the settings subscribes to the settings holder
(SIGHUP): rate limits, audit sinks, scheduler intervals, the OAuth timeout, root keys, workers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from engine import __version__
from engine.audit import Auditor
from engine.clock import now_utc
from engine.config.keyring import keyring_from_config
from engine.events import GrantEvent
from engine.flows.revoke import Revoker
from engine.flows.service import FlowDeps, FlowService
from engine.flows.waiters import RECHECK, FlowWaiters, PgFlowListener
from engine.grants.writer import GrantWriter
from engine.lifecycle.refresh import RefreshDeps, Refresher
from engine.lifecycle.scheduler import Lifecycle
from engine.metrics.registry import METRICS
from engine.oauth.client import OAuthClient
from engine.store.store import Store
from engine.tools.approvals import Approvals
from engine.tools.hooks import Hooks
from engine.tools.registry import ToolRegistry
from engine.tools.runner import ToolRunner
from engine.wiring.options import BACKGROUND, OPTIONS, Ctx, WiringOptions, opened, prepare
from engine.wiring.settings import (
    EVENTS,
    HTTP_SESSION,
    READY_CHECKS,
    SETTINGS,
    ReloadReport,
    Settings,
)

log = structlog.get_logger("keyturn.wiring")


STORE = web.AppKey("keyturn_store", Store)
WAITERS = web.AppKey("keyturn_waiters", FlowWaiters)
LISTENER = web.AppKey("keyturn_flow_listener", PgFlowListener)
AUDITOR = web.AppKey("keyturn_auditor", Auditor)
OAUTH = web.AppKey("keyturn_oauth", OAuthClient)
WRITER = web.AppKey("keyturn_grant_writer", GrantWriter)
FLOWS = web.AppKey("keyturn_flows", FlowService)
REVOKER = web.AppKey("keyturn_revoker", Revoker)
REFRESHER = web.AppKey("keyturn_refresher", Refresher)
LIFECYCLE = web.AppKey("keyturn_lifecycle", Lifecycle)
TOOLS = web.AppKey("keyturn_tools", ToolRunner)


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
    try:
        opened(app, "http_session")
        yield
    finally:
        await session.close()


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    """The store; root keys swapped in hot on reload when the new keyring keeps every old key."""
    holder = app[SETTINGS]
    settings = holder.current
    config = settings.config
    store = await Store.open(
        config.storage.url or "",
        keyring_from_config(config, settings.base_dir),
        busy_timeout=float(config.storage.busy_timeout),
        pool_size=config.storage.pool_size,
        migrate=app[OPTIONS].migrate,
        grant_cache_size=config.storage.grant_cache_size,
    )
    app[STORE] = store
    publish = app[EVENTS].publish

    def unreadable(grant: Any) -> None:  # its sealed values do not decrypt: audit, metric, cache
        publish(
            GrantEvent(
                name="grant.unreadable",
                outcome="error",
                user_id=grant.user_id,
                provider=grant.provider_id,
                reason="decrypt_failed",
            )
        )

    store.on_unreadable = unreadable

    async def root_keys(old: Settings, new: Settings, report: ReloadReport) -> None:
        if not report.touched("security.root_keys"):
            return
        keyring = keyring_from_config(new.config, new.base_dir)  # ConfigError: reported as failed
        if not keyring.keeps(store.keyring):
            report.restart("security.root_keys")  # a key was removed or changed: check_keys at start
            return
        store.keyring = keyring
        log.info("root_keys_applied", default_key=keyring.default_id)

    unsubscribe = holder.subscribe(root_keys)
    try:
        app[READY_CHECKS].append(("database", store.ping))
        opened(app, "store")
        yield
    finally:
        unsubscribe()
        await store.close()


async def waiters_ctx(app: web.Application) -> AsyncIterator[None]:
    """Long-poll waiters for flows; woken all at once on shutdown."""
    config = app[SETTINGS].current.config
    shared_sqlite = config.api.processes != 1 and not (config.storage.url or "").startswith("postgresql")
    # several processes on SQLite: no NOTIFY, so a waiter re-reads its flow every RECHECK seconds
    waiters = FlowWaiters(recheck=RECHECK if shared_sqlite else None)
    app[WAITERS] = waiters
    try:
        opened(app, "waiters")
        yield
    finally:
        waiters.notify_all()


async def listener_ctx(app: web.Application) -> AsyncIterator[None]:
    """With PostgreSQL: LISTEN for flows other replicas finished (nothing to open with SQLite)."""
    url = app[SETTINGS].current.config.storage.url or ""
    listener = None
    if url.startswith("postgresql"):
        listener = PgFlowListener(url, app[WAITERS])
        await listener.start()
        app[LISTENER] = listener
    try:
        opened(app, "listener")
        yield
    finally:
        if listener is not None:
            await listener.stop()


async def auditor_ctx(app: web.Application) -> AsyncIterator[None]:
    """The auditor, subscribed to the event stream; its sinks follow ``audit`` on reload."""
    holder = app[SETTINGS]
    store = app[STORE]
    auditor = Auditor(
        holder.current.config.audit,
        await store.meta.installation_salt(),
        database=store.audit.write,
        probe=store.ping,
        stdout=app[OPTIONS].audit_stdout,
    )
    auditor.start()
    app[AUDITOR] = auditor

    async def reconfigure(old: Settings, new: Settings, report: ReloadReport) -> None:
        if report.touched("audit"):
            await auditor.reconfigure(new.config.audit)  # ConfigError: old sinks kept, reported

    stop_events = app[EVENTS].subscribe(auditor.on_event)
    unsubscribe = holder.subscribe(reconfigure)
    try:
        opened(app, "auditor")
        yield
    finally:
        unsubscribe()
        stop_events()
        await auditor.aclose()


async def oauth_ctx(app: web.Application) -> AsyncIterator[None]:
    """The OAuth client (discovery and JWKS caches) on the shared session."""
    holder = app[SETTINGS]
    oauth = OAuthClient(app[HTTP_SESSION], timeout=float(holder.current.config.lifecycle.refresh_timeout))
    app[OAUTH] = oauth
    app[WRITER] = GrantWriter(app[STORE], oauth, lambda: holder.current.config)  # the one refresh schedule

    async def timeout(old: Settings, new: Settings, report: ReloadReport) -> None:
        oauth.timeout = float(new.config.lifecycle.refresh_timeout)

    unsubscribe = holder.subscribe(timeout)
    try:
        opened(app, "oauth")
        yield
    finally:
        unsubscribe()


async def flows_ctx(app: web.Application) -> AsyncIterator[None]:
    """The flow service; its status cache follows the event stream, its limiter the settings."""
    holder = app[SETTINGS]
    store = app[STORE]
    notify = None if store.sqlite else _pg_notify(store)
    flows = FlowService(
        FlowDeps(
            store=store,
            oauth=app[OAUTH],
            waiters=app[WAITERS],
            config=lambda: holder.current.config,
            providers=lambda: holder.current.providers,
            public_url=lambda: holder.current.public_url,
            writer=app[WRITER],
            publish=app[EVENTS].publish,
            notify=notify,
        )
    )
    app[FLOWS] = flows

    async def limits(old: Settings, new: Settings, report: ReloadReport) -> None:
        rl = new.config.security.rate_limiting
        flows.limiter.configure(rl.max_auth_attempts, rl.window_minutes * 60.0)

    stop_events = app[EVENTS].subscribe(flows.on_event)
    unsubscribe = holder.subscribe(limits)
    try:
        opened(app, "flows")
        yield
    finally:
        unsubscribe()
        stop_events()


async def revoker_ctx(app: web.Application) -> AsyncIterator[None]:
    """The one way to disconnect a grant (API, CLI, the reaper's retries); its outcomes are events."""
    holder = app[SETTINGS]
    app[REVOKER] = Revoker(
        store=app[STORE],
        oauth=app[OAUTH],
        providers=lambda: holder.current.providers,
        publish=app[EVENTS].publish,
    )
    opened(app, "revoker")
    yield


def _pg_notify(store: Store) -> Callable[[str], Any]:
    async def send(flow_id: str) -> None:
        try:
            await store.notify_flow(flow_id)
        except Exception as exc:
            log.warning("flow_notify_failed", error=type(exc).__name__)

    return lambda flow_id: asyncio.ensure_future(send(flow_id))


async def refresher_ctx(app: web.Application) -> AsyncIterator[None]:
    """The refresher (scheduled and on-demand refreshes); in-flight ones finish on close."""
    holder = app[SETTINGS]
    refresher = Refresher(
        RefreshDeps(
            store=app[STORE],
            oauth=app[OAUTH],
            config=lambda: holder.current.config,
            providers=lambda: holder.current.providers,
            writer=app[WRITER],
            publish=app[EVENTS].publish,
        )
    )
    app[REFRESHER] = refresher
    try:
        opened(app, "refresher")
        yield
    finally:
        await refresher.drain(5.0)


async def lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    """The scheduler: refresh passes, the reaper, the gauges; intervals follow ``lifecycle`` on reload."""
    holder = app[SETTINGS]
    store = app[STORE]
    metrics = app.get(METRICS)

    async def gauges() -> None:
        if metrics is None:
            return
        metrics.set_grants(await store.grants.count_by_status())
        now = now_utc()
        oldest = await store.grants.oldest_due(now)
        metrics.observe_refresh_lag((now - oldest).total_seconds() if oldest else 0.0)

    lifecycle = Lifecycle(
        app[REFRESHER],
        store=store,
        config=lambda: holder.current.config,
        publish=app[EVENTS].publish,
        retry_revocation=app[REVOKER].revoke,
        gauges=gauges if metrics is not None else None,
        stop_grace=lambda: float(holder.current.config.api.shutdown_grace),
    )
    app[LIFECYCLE] = lifecycle

    async def intervals(old: Settings, new: Settings, report: ReloadReport) -> None:
        if report.touched("lifecycle.refresh_interval", "lifecycle.reap_interval"):
            lifecycle.reschedule()

    unsubscribe = holder.subscribe(intervals)
    try:
        if app[OPTIONS].scheduler and app[OPTIONS].leader:
            app[BACKGROUND].add(lifecycle.start)
        opened(app, "lifecycle")
        yield
    finally:
        unsubscribe()
        await lifecycle.stop()


async def tools_ctx(app: web.Application) -> AsyncIterator[None]:
    """The tool catalog (refreshed in the background) and the execute path; workers and hooks follow
    reloads."""
    holder = app[SETTINGS]
    registry = ToolRegistry(lambda: holder.current.config, app[HTTP_SESSION], publish=app[EVENTS].publish)
    hooks = Hooks(lambda: holder.current.config, app[HTTP_SESSION], registry.all, publish=app[EVENTS].publish)
    store = app[STORE]
    approvals = Approvals(
        store,
        lambda: holder.current.config,
        lambda: holder.current.public_url,
        app[WAITERS],
        notify=None if store.sqlite else _pg_notify(store),  # wake waiters on other replicas
        publish=app[EVENTS].publish,
    )
    app[TOOLS] = ToolRunner(
        registry,
        app[FLOWS],
        app[REFRESHER],
        lambda: holder.current.config,
        store=app[STORE],
        publish=app[EVENTS].publish,
        hooks=hooks,
        approvals=approvals,
    )
    pending: set[asyncio.Task[None]] = set()

    async def follow(old: Settings, new: Settings, report: ReloadReport) -> None:
        if report.touched("tools.hooks"):  # a changed hook's cached access answers no longer hold
            hooks.forget()
        if report.touched("workers", "tools.directors"):
            task = asyncio.ensure_future(registry.refresh())  # ask the new workers now, not next round
            pending.add(task)
            task.add_done_callback(pending.discard)

    unsubscribe = holder.subscribe(follow)
    try:
        if app[OPTIONS].scheduler:
            app[BACKGROUND].add(registry.start)
        opened(app, "tools")
        yield
    finally:
        unsubscribe()
        for task in pending:
            task.cancel()
        await registry.stop()


CONTEXTS: tuple[tuple[web.AppKey[Any], Ctx], ...] = (
    (HTTP_SESSION, http_session_ctx),
    (STORE, store_ctx),
    (WAITERS, waiters_ctx),
    (LISTENER, listener_ctx),
    (AUDITOR, auditor_ctx),
    (OAUTH, oauth_ctx),
    (FLOWS, flows_ctx),
    (REVOKER, revoker_ctx),
    (REFRESHER, refresher_ctx),
    (LIFECYCLE, lifecycle_ctx),
    (TOOLS, tools_ctx),
)


def install(app: web.Application) -> None:
    """Add every context of :data:`CONTEXTS` to ``app.cleanup_ctx``, in order."""
    for _key, ctx in CONTEXTS:
        app.cleanup_ctx.append(ctx)


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, *, until: web.AppKey[Any], options: WiringOptions | None = None
) -> AsyncIterator[web.Application]:
    """Open the contexts up to the one that yields ``until`` (the CLI's wiring); close them after."""
    app = web.Application()
    prepare(app, settings, options or WiringOptions(scheduler=False, migrate=False))
    async with contextlib.AsyncExitStack() as stack:
        for key, ctx in CONTEXTS:
            await stack.enter_async_context(contextlib.asynccontextmanager(ctx)(app))
            if key is until:
                break
        else:
            raise ValueError(f"{until!r} is not opened by any context")
        yield app
