"""The engine's tools behind ``ToolBackend``: the worker catalog and the ``/v1/tools/execute`` path.

``mount_mcp(app)`` serves ``/mcp`` with the ``McpServer`` that ``mcp_ctx`` builds from the settings
(``mcp.allowed_origins`` plus the public URL's origin, ``mcp.auth``, ``mcp.default_user``) and keeps
in step with them on SIGHUP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from engine.config.model import GatewayConfig
from engine.errors import KeyturnError, NotFound
from engine.flows.results import Authorization
from engine.mcp.backend import NeedsAuthorization, Relay, ToolNotFound, UpstreamInput
from engine.mcp.bridge import McpBridge
from engine.mcp.httperrors import answering_errors
from engine.mcp.protocol import text_result
from engine.mcp.request_state import PURPOSE, KeySource
from engine.mcp.server import McpServer
from engine.tools.access import caller_allows, current_caller
from engine.tools.formats import input_json_schema
from engine.wiring.options import opened
from engine.wiring.services import FLOWS, REFRESHER, STORE, TOOLS
from engine.wiring.settings import HTTP_SESSION, SETTINGS, ReloadReport, Settings


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
                self.app[REFRESHER],
            )
            self._bridge_instance = bridge
        return bridge

    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        caller = current_caller()
        out = []
        if self.app[SETTINGS].current.config.mcp.servers:
            bridge = self._bridge()
            for listed in await bridge.list_tools(user_id):
                owner = bridge.owner(listed["name"])
                if owner is None or caller_allows(caller, f"{owner[0].id}.{owner[1]}"):
                    out.append(listed)
        for tool in await self.app[TOOLS].tools(caller=current_caller(), user_id=user_id):
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

    async def catalog_version(self, user_id: str | None) -> tuple[int, int]:
        """Changes when a worker's or an upstream server's tools do (asks them when stale)."""
        config = self.app[SETTINGS].current.config
        registry = self.app[TOOLS].registry
        await registry.ensure_fresh()
        if not config.mcp.servers:
            return registry.version, 0
        bridge = self._bridge()
        await bridge.ensure_fresh(user_id, float(config.tools.catalog_refresh))
        return registry.version, bridge.version

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None, relay: Relay | None = None
    ) -> dict[str, Any] | NeedsAuthorization | UpstreamInput:
        bridged = self._bridge().owner(name) if self.app[SETTINGS].current.config.mcp.servers else None
        if bridged is not None:
            if not caller_allows(current_caller(), f"{bridged[0].id}.{bridged[1]}"):
                raise ToolNotFound(name)  # a bridged tool the key may not see does not exist for it
            try:
                return await self._bridge().call_tool(bridged[0], bridged[1], arguments, user_id, relay)
            except KeyturnError as exc:
                return text_result(f"{exc.error}: {exc.msg}", is_error=True)
        try:
            answer = await self.app[TOOLS].execute(name, arguments, user_id, caller=current_caller())
        except NotFound as exc:
            raise ToolNotFound(name) from exc
        except KeyturnError as exc:
            return text_result(f"{exc.error}: {exc.msg}", is_error=True)
        output = answer.output
        pending = answer.authorization
        if pending is not None and pending.url and str(pending.id).startswith("ap_"):  # tools.approval
            return NeedsAuthorization(
                url=pending.url,
                flow_id=str(pending.id),
                provider_id="",
                message=f"Approve this call of {name} to continue.",
                kind="approval",
            )
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
        approvals = self.app[TOOLS].approvals
        try:
            answer: Authorization
            if flow_id.startswith("ap_") and approvals is not None:
                answer = await approvals.status(flow_id, timeout)
            else:
                answer = await self.app[FLOWS].status(flow_id, timeout)
        except KeyturnError:
            return "failed"
        return answer.status


def engine_mcp_server(app: web.Application) -> McpServer:
    """The ``McpServer`` for this engine, configured from the current settings.

    The app's API key middleware covers ``/mcp`` (``needs_api_key_or_mcp``); the server also refuses a
    request the middleware did not authenticate while ``mcp.auth`` is ``api_key``.
    """
    holder = app[SETTINGS]
    config = holder.current.config

    def origins() -> list[str]:
        current = holder.current
        public = urlsplit(current.public_url)
        return [*current.config.mcp.allowed_origins, f"{public.scheme}://{public.netloc}"]

    return McpServer(
        EngineToolBackend(app),
        allowed_origins=origins,
        require_api_key=config.mcp.auth != "none",
        default_user=config.mcp.default_user,
        elicitation_timeout=float(config.security.flow_ttl),
        instructions=instructions(config.mcp.auth),
        state_keys=_state_keys(app),
    )


def gateway_server(app: web.Application, gateway: GatewayConfig) -> McpServer:
    """The ``McpServer`` of one ``mcp.gateways[]`` entry: only its tools (``engine.mcp.gateways``)."""
    from engine.mcp.gateways import GatewayBackend

    server = engine_mcp_server(app)
    config = app[SETTINGS].current.config
    mode = gateway.auth or config.mcp.auth
    server.backend = GatewayBackend(EngineToolBackend(app), gateway.tools)
    server.require_api_key = mode != "none"
    server.server_name = f"keyturn-{gateway.slug}"
    server.instructions = gateway.instructions or instructions(mode)
    return server


def instructions(mode: str) -> str:
    if mode in ("oauth", "jwt"):
        return "Tools run as the signed-in user; tokens never leave Keyturn."
    return "Tools run as the user named by the Keyturn-User-Id header; tokens never leave Keyturn."


MCP = web.AppKey("keyturn_mcp", McpServer)


def _state_keys(app: web.Application) -> KeySource:
    """requestState keys: HKDF of the engine's root keys (the default one seals, any configured opens)."""

    def source(key_id: str | None) -> tuple[str, bytes]:
        keyring = app[STORE].keyring
        kid = key_id or keyring.default_id
        if kid not in keyring.key_ids:
            raise KeyError(kid)
        return kid, keyring.derive_key(PURPOSE, kid)

    return source


async def mcp_ctx(app: web.Application) -> AsyncIterator[None]:
    """The MCP server and its sessions; ``mcp.auth``, ``mcp.default_user`` follow the settings."""
    server = engine_mcp_server(app)
    app[MCP] = server

    async def reconfigure(old: Settings, new: Settings, report: ReloadReport) -> None:
        server.require_api_key = new.config.mcp.auth != "none"
        server.default_user = new.config.mcp.default_user
        server.elicitation_timeout = float(new.config.security.flow_ttl)
        server.instructions = instructions(new.config.mcp.auth)

    unsubscribe = app[SETTINGS].subscribe(reconfigure)
    try:
        opened(app, "mcp")
        yield
    finally:
        unsubscribe()
        server.close_all()


def mount_mcp(app: web.Application, path: str = "/mcp") -> None:
    """Serve ``path`` with the engine's MCP server (404 while ``mcp.enabled`` is false) and open it."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if not request.app[SETTINGS].current.config.mcp.enabled:
            raise web.HTTPNotFound()
        server = request.app[MCP]
        if request.method == "POST":
            return await server.post(request)
        if request.method == "GET":
            return await server.get(request)
        return await server.delete(request)

    async def end_sessions(app: web.Application) -> None:
        server = app.get(MCP)
        if server is not None:
            server.close_all()  # open streams end before the server waits for requests to finish

    for method in ("POST", "GET", "DELETE"):
        app.router.add_route(method, path, answering_errors(handle))  # every error a JSON-RPC error object
    from engine.mcp.cors import mount_cors

    mount_cors(app, path)  # OPTIONS and the CORS headers, for mcp.allowed_origins only
    from engine.mcp.gateways import setup_gateways

    setup_gateways(app, lambda gateway: gateway_server(app, gateway))  # /mcp/{slug}
    app.on_shutdown.append(end_sessions)
    app.cleanup_ctx.append(mcp_ctx)
