"""The API edge's guards on the engine's services: API keys (config and store) and ``audit.required``.

The services themselves are opened by the composition root, :mod:`engine.wiring.services`.
"""

from __future__ import annotations

import contextlib
import hmac
from typing import Any

import structlog
from aiohttp import web

from engine.api.auth import api_key_middleware, needs_api_key_or_mcp
from engine.api.jsonio import error_response
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


def api_key_guard(app: web.Application) -> Any:
    limiter = api_key_limiter(app)
    verifier = ApiKeys(app)

    async def denied(request: web.Request, reason: str) -> None:
        source_ip = app[SETTINGS].current.client_address.of(request)
        log.info("api_key_denied", route=request.path[:100], reason=reason, source_ip=source_ip)
        publish_denied(app, reason, source_ip)

    def needs_key(path: str) -> bool:
        from engine.mcp.resource import endpoint_mode

        config = app[SETTINGS].current.config
        mode = endpoint_mode(config, path)
        if mode is not None:  # /mcp or a gateway: the key only in mode api_key (oauth, jwt: resource_guard)
            return mode == "api_key"
        return needs_api_key_or_mcp(path, mcp_auth=config.mcp.auth)

    def answer(request: web.Request, exc: KeyturnError, headers: dict[str, str] | None) -> web.StreamResponse:
        if request.path == "/mcp" or request.path.startswith("/mcp/"):  # MCP clients read JSON-RPC errors
            return error_answer(exc, headers)
        return error_response(exc, headers=headers)

    return api_key_middleware(
        lambda _r: verifier,
        limiter,
        lambda r: app[SETTINGS].current.client_address.of(r),
        denied,
        needs_key=needs_key,
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


def audit_guard(app: web.Application) -> Any:
    """With ``audit.required``, for a request that may change something: refuse it (503
    audit_unavailable) while no audit sink can write, before its handler runs; then wait until every
    audit record it emitted was written (group commit, :meth:`engine.audit.Auditor.confirm`) and answer
    503 instead of its answer when one was written by no sink."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        auditor = app.get(AUDITOR)
        if (
            auditor is None
            or not auditor.config.required
            or (request.method in ("GET", "HEAD", "OPTIONS") and not request.path.startswith(_CHANGING_GETS))
        ):
            response: web.StreamResponse = await handler(request)
            return response
        auditor.require_ready()
        with auditor.confirming() as pending:
            response = await handler(request)
        try:
            await auditor.confirm(pending)
        except KeyturnError as exc:
            if response.prepared:  # a stream already under way cannot become an error any more
                log.error("audit_record_unwritten_after_answer", route=request.path[:100])
                return response
            if request.path == "/mcp" or request.path.startswith("/mcp/"):
                return error_answer(exc, None)
            raise
        return response

    return middleware
