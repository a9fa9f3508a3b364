"""``mcp.gateways[]``: a named subset of the tools at ``/mcp/{slug}`` (DESIGN.md "MCP").

Each gateway lists and calls only the tools its ``tools`` globs match (``Gmail.*``,
``Github.ListRepos``: the ``Toolkit.Tool`` names, matched case-sensitively); a call to any other
tool is "Unknown tool", as if it did not exist. ``/mcp`` itself keeps serving every tool. The
gateways are read from the current config on each request (a reload adds, changes or removes
them); each has its own MCP server (sessions) and its own protected-resource metadata.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from aiohttp import web

from engine.config.model import GatewayConfig
from engine.mcp.backend import NeedsAuthorization, Relay, ToolBackend, ToolNotFound, UpstreamInput
from engine.mcp.httperrors import answering_errors, refused
from engine.mcp.server import McpServer
from engine.wiring.settings import SETTINGS


def dotted(tool: dict[str, Any]) -> str:
    """A listed tool's ``Toolkit.Tool`` name (its title, or its name with the first ``_`` as ``.``)."""
    title = tool.get("title")
    if isinstance(title, str) and title:
        return title
    return str(tool.get("name", "")).replace("_", ".", 1)


class GatewayBackend:
    """A ``ToolBackend`` serving only the tools that match ``globs``."""

    def __init__(self, inner: ToolBackend, globs: tuple[str, ...]) -> None:
        self.inner = inner
        self.globs = globs

    def allows(self, tool: dict[str, Any]) -> bool:
        name = dotted(tool)
        return any(fnmatch.fnmatchcase(name, g) for g in self.globs)

    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        return [t for t in await self.inner.list_tools(user_id) if self.allows(t)]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None, relay: Relay | None = None
    ) -> dict[str, Any] | NeedsAuthorization | UpstreamInput:
        if not any(t.get("name") == name for t in await self.list_tools(user_id)):
            raise ToolNotFound(name)
        if relay is None:
            return await self.inner.call_tool(name, arguments, user_id)
        return await self.inner.call_tool(name, arguments, user_id, relay=relay)

    async def catalog_version(self, user_id: str | None) -> Any:
        version = getattr(self.inner, "catalog_version", None)
        return await version(user_id) if version is not None else 0

    async def wait_flow(self, flow_id: str, timeout: float) -> str:  # noqa: ASYNC109 - a long-poll bound
        return await self.inner.wait_flow(flow_id, timeout)


GATEWAYS = web.AppKey("keyturn_mcp_gateways", dict[str, tuple[tuple[GatewayConfig, str], McpServer]])


def setup_gateways(app: web.Application, make_server: Any) -> None:
    """Mount ``/mcp/{slug}``; ``make_server(gateway) -> McpServer`` builds one per gateway."""
    app[GATEWAYS] = {}

    def server_for(request: web.Request) -> McpServer:
        slug = request.match_info["slug"]
        config = request.app[SETTINGS].current.config
        gateway = next((g for g in config.mcp.gateways if g.slug == slug), None)
        if gateway is None or not config.mcp.enabled:
            raise refused(404, "not_found", "no MCP gateway by that name")
        known = app[GATEWAYS].get(slug)
        if known is None or known[0] != (gateway, config.mcp.auth):  # new, or changed by a reload
            if known is not None:
                known[1].close_all()
            known = ((gateway, config.mcp.auth), make_server(gateway))
            app[GATEWAYS][slug] = known
        return known[1]

    async def post(request: web.Request) -> web.StreamResponse:
        return await server_for(request).post(request)

    async def get(request: web.Request) -> web.StreamResponse:
        return await server_for(request).get(request)

    async def delete(request: web.Request) -> web.StreamResponse:
        return await server_for(request).delete(request)

    async def shutdown(app: web.Application) -> None:
        for _, server in app[GATEWAYS].values():
            server.close_all()

    path = "/mcp/{slug:[a-z0-9][a-z0-9-]{0,62}}"
    routes = [web.post(path, answering_errors(post)), web.get(path, answering_errors(get)),
              web.delete(path, answering_errors(delete))]  # fmt: skip
    app.router.add_routes(routes)
    app.on_shutdown.append(shutdown)
