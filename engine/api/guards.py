"""The API edge's guards on the engine's services: API keys (config and store) and ``audit.required``.

The services themselves are opened by the composition root, :mod:`engine.wiring.services`.
"""

from __future__ import annotations

import contextlib
import hmac
from typing import Any

import structlog
from aiohttp import web

from engine.api.auth import ApiKeyCheck, as_caller, is_preflight, needs_api_key, needs_api_key_or_mcp
from engine.api.jsonio import error_response
from engine.api.middleware import Guard, Handler
from engine.errors import KeyturnError
from engine.events import AccessEvent, AccessName
from engine.mcp.httperrors import error_answer
from engine.store.ratehits import SharedLimiter
from engine.tools.access import Caller
from engine.wiring.services import AUDITOR, STORE
from engine.wiring.settings import EVENTS, SETTINGS, ReloadReport, Settings

log = structlog.get_logger("keyturn.services")


class ApiKeys:
    """Keys from ``security.api_keys`` (compared in constant time) and keys in the store."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    async def verify(self, presented: str, *, limited: bool = False) -> Caller | None:
        if len(presented) > 512:
            return None
        config = self.app[SETTINGS].current.config
        for i, entry in enumerate(config.security.api_keys):
            key, tools = (entry, None) if isinstance(entry, str) else (entry.key, entry.tools)
            if key and hmac.compare_digest(key.encode(), presented.encode()):
                return Caller(name=f"security.api_keys[{i}]", tools=tools)
        if presented.startswith("kt_"):
            record = await self.app[STORE].api_keys.verify(presented, known_only=limited)
            return None if record is None else Caller(name=record.name, tools=record.tools)
        return None


def api_key_check(app: web.Application) -> ApiKeyCheck:
    """The API key check of the engine: keys of the config and the store, failures limited per address
    (in the database), refusals audited, answered as JSON-RPC errors on ``/mcp``."""
    limiter = api_key_limiter(app)
    verifier = ApiKeys(app)

    async def denied(request: web.Request, reason: str) -> None:
        source_ip = app[SETTINGS].current.client_address.of(request)
        log.info("api_key_denied", route=request.path[:100], reason=reason, source_ip=source_ip)
        publish_denied(app, reason, source_ip)

    def answer(request: web.Request, exc: KeyturnError, headers: dict[str, str] | None) -> web.StreamResponse:
        if request.path == "/mcp" or request.path.startswith("/mcp/"):  # MCP clients read JSON-RPC errors
            return error_answer(exc, headers)
        return error_response(exc, headers=headers)

    return ApiKeyCheck(
        lambda _r: verifier,
        limiter,
        lambda r: app[SETTINGS].current.client_address.of(r),
        denied,
        answer=answer,
    )


def api_key_limiter(app: web.Application) -> SharedLimiter:
    """Failed API key attempts per address (counted in the database: all processes and replicas),
    following ``security.rate_limiting`` on reload."""
    rl = app[SETTINGS].current.config.security.rate_limiting
    limiter = SharedLimiter(
        lambda: app[STORE].rate_hits, "api_key", rl.max_api_key_failures, rl.window_minutes * 60.0
    )

    async def reconfigure(old: Settings, new: Settings, report: ReloadReport) -> None:
        rl = new.config.security.rate_limiting
        limiter.configure(rl.max_api_key_failures, rl.window_minutes * 60.0)

    app[SETTINGS].subscribe(reconfigure)
    return limiter


def publish_denied(app: web.Application, reason: str, source_ip: str) -> None:
    """Publish a refused API key (or its rate limit) to the event stream."""
    name: AccessName = "rate_limited" if reason == "rate_limited" else "api_key.denied"
    with contextlib.suppress(Exception):  # audit.required does not turn a 401 into a 503
        app[EVENTS].publish(AccessEvent(name=name, reason=reason, source_ip=source_ip))


# GET requests that still change something: the flow link (a new state) and the provider's callback
_CHANGING_GETS = ("/v1/oauth/", "/api/oauth/", "/login")  # flow links, callbacks (seed 003's too), sign-in
_SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def may_change(method: str, path: str) -> bool:
    """Whether a request may change something (``audit.required`` refuses it while no sink writes)."""
    return method not in _SAFE_METHODS or path.startswith(_CHANGING_GETS)


ROUTE_GUARDS: web.AppKey[RouteGuards] = web.AppKey("keyturn_route_guards")


def is_mcp_path(path: str) -> bool:
    return path == "/mcp" or path.startswith("/mcp/")


async def confirmed(auditor: Any, request: web.Request, handler: Handler) -> web.StreamResponse:
    """``audit.required`` on a request that may change something: refuse it (503 audit_unavailable)
    while no audit sink can write, before its handler runs; then wait until every audit record it
    emitted was written (group commit, :meth:`engine.audit.Auditor.confirm`) and answer 503 instead of
    its answer when one was written by no sink."""
    auditor.require_ready()
    with auditor.confirming() as pending:
        response = await handler(request)
    try:
        await auditor.confirm(pending)
    except KeyturnError as exc:
        if response.prepared:  # a stream already under way cannot become an error any more
            log.error("audit_record_unwritten_after_answer", route=request.path[:100])
            return response
        if is_mcp_path(request.path):
            return error_answer(exc, None)
        raise
    return response


class RouteGuards:  # kept in app[ROUTE_GUARDS]
    """The guards every request passes, chosen per route once the router is frozen (at startup).

    In order: the API key (``needs_api_key``; on ``/mcp`` and the gateways as ``mcp.auth`` says), then
    ``audit.required`` (a request that may change something is refused with 503 while no audit sink
    can write, before its handler runs: nothing is changed unrecorded), then, on the MCP endpoints,
    OAuth / JWT bearer tokens (``engine.mcp.resource``). A route with a fixed path and method gets
    exactly the steps it needs, decided once (``/ping``: none; ``GET /v1/auth/status``: the key);
    routes with path parameters, the MCP endpoints (whose modes follow a reload) and requests that
    match no route (404/405) decide per request, as every request once did.
    """

    def __init__(self, app: web.Application, resource: Guard | None = None) -> None:
        self.app = app
        self.keys = api_key_check(app)
        self.resource = resource  # engine.mcp.resource.resource_guard(app)
        self.by_route: dict[int, Guard | None] = {}  # id(route) -> its guard (None: none)
        app.on_startup.append(self._decide)
        app[ROUTE_GUARDS] = self

    def guard_of(self, request: web.Request) -> Guard | None:
        """The route's guards (None: none): ``edge_middleware``'s ``guard_of``."""
        try:
            return self.by_route[id(request.match_info.route)]
        except KeyError:  # no route (404/405), or asked before startup
            return self.per_request

    async def _decide(self, app: web.Application) -> None:
        for route in app.router.routes():
            self.by_route[id(route)] = self.for_route(route)

    def for_route(self, route: Any) -> Guard | None:
        """The guard of one route: fixed steps where its method and path fix them, else per request."""
        resource = route.resource
        method = route.method
        if resource is None or method in ("*", "OPTIONS") or is_mcp_path(resource.canonical):
            return self.per_request  # OPTIONS: a CORS preflight needs no key
        if not isinstance(resource, web.PlainResource):  # {params}: decide on the request's own path
            return self.per_request
        path = resource.canonical
        return self.fixed(needs_api_key(path), may_change(method, path))

    def fixed(self, key: bool, audited: bool) -> Guard | None:
        refusal, app = self.keys.refusal, self.app
        if key and audited:

            async def key_and_audit(request: web.Request, handler: Handler) -> web.StreamResponse:
                refused = await refusal(request)
                if refused is not None:
                    return refused
                auditor = app.get(AUDITOR)
                if auditor is not None and auditor.config.required:
                    return await as_caller(request, lambda r: confirmed(auditor, r, handler))
                return await as_caller(request, handler)

            return key_and_audit
        if key:

            async def key_only(request: web.Request, handler: Handler) -> web.StreamResponse:
                refused = await refusal(request)
                if refused is not None:
                    return refused
                return await as_caller(request, handler)

            return key_only
        if audited:

            async def audit_only(request: web.Request, handler: Handler) -> web.StreamResponse:
                auditor = app.get(AUDITOR)
                if auditor is not None and auditor.config.required:
                    return await confirmed(auditor, request, handler)
                return await handler(request)

            return audit_only
        return None

    def needs_key(self, path: str) -> bool:
        from engine.mcp.resource import endpoint_mode

        config = self.app[SETTINGS].current.config
        mode = endpoint_mode(config, path)
        if mode is not None:  # /mcp or a gateway: the key only in mode api_key (oauth, jwt: resource)
            return mode == "api_key"
        return needs_api_key_or_mcp(path, mcp_auth=config.mcp.auth)

    async def per_request(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every step decided on this request's path and method."""
        path = request.path
        if self.needs_key(path) and not is_preflight(request):  # a CORS preflight carries no key
            refused = await self.keys.refusal(request)
            if refused is not None:
                return refused
            return await as_caller(request, lambda r: self._after_key(r, handler))
        return await self._after_key(request, handler)

    async def _after_key(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        auditor = self.app.get(AUDITOR)
        if auditor is not None and auditor.config.required and may_change(request.method, request.path):
            return await confirmed(auditor, request, lambda r: self._resource(r, handler))
        return await self._resource(request, handler)

    async def _resource(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.resource is not None and is_mcp_path(request.path):
            return await self.resource(request, handler)
        return await handler(request)
