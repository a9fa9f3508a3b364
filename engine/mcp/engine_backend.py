"""The engine's tools behind ``ToolBackend``: the worker catalog and the ``/v1/tools/execute`` path.

``engine_mcp_server(app)`` builds the ``McpServer`` for the running engine from its settings
(``mcp.allowed_origins`` plus the public URL's origin, ``mcp.auth``, ``mcp.default_user``).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from engine.api.auth import api_key_middleware
from engine.api.state import FLOWS, HTTP_SESSION, SETTINGS, TOOLS
from engine.errors import KeyturnError, NotFound
from engine.flows.results import Authorization
from engine.mcp.backend import NeedsAuthorization, ToolNotFound
from engine.mcp.bridge import McpBridge
from engine.mcp.protocol import text_result
from engine.mcp.server import McpServer
from engine.ratelimit import SlidingWindowLimiter
from engine.tools.formats import input_json_schema


class EngineToolBackend:
    """Tools of every configured worker, called through the shared execute path (one audit event)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._bridge_instance: McpBridge | None = None  # upstream MCP servers, made on first use

    def _bridge(self) -> McpBridge:
        bridge = self._bridge_instance
        if bridge is None:
            bridge = McpBridge(
                lambda: self.app[SETTINGS].current.config,
                self.app[HTTP_SESSION],
                self.app[FLOWS],
                self.app[TOOLS].refresher,
            )
            self._bridge_instance = bridge
        return bridge

    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        out = (
            await self._bridge().list_tools(user_id) if self.app[SETTINGS].current.config.mcp.servers else []
        )
        for tool in await self.app[TOOLS].registry.all():
            d = tool.definition
            out.append(
                {
                    "name": f"{d['toolkit']['name']}_{d['name']}",
                    "title": f"{d['toolkit']['name']}.{d['name']}",
                    "description": d.get("description") or "",
                    "inputSchema": input_json_schema(d),
                }
            )
        return out

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None
    ) -> dict[str, Any] | NeedsAuthorization:
        bridged = self._bridge().owner(name) if self.app[SETTINGS].current.config.mcp.servers else None
        if bridged is not None:
            try:
                return await self._bridge().call_tool(bridged[0], bridged[1], arguments, user_id)
            except KeyturnError as exc:
                return text_result(f"{exc.error}: {exc.msg}", is_error=True)
        try:
            answer = await self.app[TOOLS].execute(name, arguments, user_id)
        except NotFound as exc:
            raise ToolNotFound(name) from exc
        except KeyturnError as exc:
            return text_result(f"{exc.error}: {exc.msg}", is_error=True)
        output = answer.output
        pending = answer.authorization
        if pending is not None and pending.url:
            provider = pending.provider_id or "the provider"
            return NeedsAuthorization(
                url=pending.url,
                flow_id=str(pending.id),
                provider_id=provider,
                message=f"Authorize access to {provider} to continue.",
            )
        if not answer.success:
            error = output.get("error") or {}
            return text_result(str(error.get("message") or "the tool failed"), is_error=True)
        value = output.get("value")
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
        result = text_result(text)
        if isinstance(value, dict):
            result["structuredContent"] = value
        return result

    async def wait_flow(self, flow_id: str, timeout: float) -> str:  # noqa: ASYNC109 - a long-poll bound
        try:
            answer: Authorization = await self.app[FLOWS].status(flow_id, timeout)
        except KeyturnError:
            return "failed"
        return answer.status


def engine_mcp_server(app: web.Application, path: str = "/mcp", *, key_check: bool = True) -> McpServer:
    """The ``McpServer`` for this engine.

    ``key_check`` adds a middleware checking the API key on ``path`` (unless ``mcp.auth: none``);
    pass False once the app's own API key middleware covers it (``needs_api_key_or_mcp``).
    """
    settings = app[SETTINGS]
    config = settings.current.config
    require_key = config.mcp.auth != "none"

    def origins() -> list[str]:
        current = settings.current
        public = urlsplit(current.public_url)
        return [*current.config.mcp.allowed_origins, f"{public.scheme}://{public.netloc}"]

    if require_key and key_check:
        app.middlewares.append(_mcp_key_guard(app, path))
    return McpServer(
        EngineToolBackend(app),
        allowed_origins=origins,
        require_api_key=require_key,
        default_user=config.mcp.default_user,
        elicitation_timeout=float(config.security.flow_ttl),
    )


def _mcp_key_guard(app: web.Application, path: str) -> Any:
    from engine.api.services import AUDITOR, ApiKeys

    config = app[SETTINGS].current.config
    limiter = SlidingWindowLimiter(
        config.security.rate_limiting.max_api_key_failures,
        config.security.rate_limiting.window_minutes * 60.0,
    )

    async def denied(request: web.Request, reason: str) -> None:
        auditor = app.get(AUDITOR)
        if auditor is not None:
            event = "rate_limited" if reason == "rate_limited" else "api_key.denied"
            with contextlib.suppress(Exception):
                auditor.emit(event, outcome="denied", reason=reason, source_ip=_ip(app, request))

    return api_key_middleware(
        lambda _r: ApiKeys(app), limiter, lambda r: _ip(app, r), denied, needs_key=lambda p: p == path
    )


def _ip(app: web.Application, request: web.Request) -> str:
    return app[SETTINGS].current.client_address.of(request)
