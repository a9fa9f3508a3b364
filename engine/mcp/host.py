"""What engine.mcp.modern, .listen and .handshake need from the server hosting them (engine.mcp.server).

A protocol, so that the server imports the modern era and not the other way round.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from aiohttp import web

from engine.mcp.backend import NeedsAuthorization, Relay, ToolBackend, UpstreamInput
from engine.mcp.request_state import RequestStateSealer


class McpHost(Protocol):
    server_name: str
    version: str
    instructions: str
    sealer: RequestStateSealer
    input_wait: float
    keepalive: float
    listen_poll: float
    max_listeners: int
    listeners: set[asyncio.Event]

    def user(self, request: web.Request) -> str | None: ...

    def caller(self, request: web.Request) -> str: ...

    async def backend_tools(self, request: web.Request) -> list[dict[str, Any]]: ...

    async def run_tool(
        self, request: web.Request, name: str, arguments: dict[str, Any], relay: Relay | None = None
    ) -> dict[str, Any] | NeedsAuthorization | UpstreamInput: ...

    async def wait_flow(self, flow_id: str, timeout: float) -> str: ...  # noqa: ASYNC109 - a long-poll bound

    async def catalog_version(self, user: str | None) -> Any: ...


class HandshakeHost(McpHost, Protocol):
    """What engine.mcp.handshake needs besides: the session limits and the backend's flow waits."""

    backend: ToolBackend
    max_sessions: int
    session_idle: float
    elicitation_timeout: float
