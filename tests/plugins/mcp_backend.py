"""A small MCP test backend and ``mcp_serve``: McpServer over it in an aiohttp app on 127.0.0.1 (port 0).

``FlagBackend`` has two tools: ``echo`` runs at once; ``whoami`` needs authorization until
``complete()`` is called (its flow link is ``LINK``); ``fail()`` makes the waited flow fail.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from engine.mcp.backend import NeedsAuthorization, ToolNotFound
from engine.mcp.server import McpServer

LINK = "http://127.0.0.1:1/v1/oauth/start/fl_test"


class FlagBackend:
    """Two tools: ``echo`` runs at once; ``whoami`` needs authorization until ``complete`` is called."""

    def __init__(self) -> None:
        self.authorized = False
        self.done = asyncio.Event()
        self.waits = 0
        self.failed = False
        self.list_fails: Exception | None = None
        self.server: Any = None  # the McpServer serving it (set by mcp_serve)
        self.catalog = 0  # bump to announce a changed tool list (subscriptions/listen)

    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        if self.list_fails is not None:
            raise self.list_fails
        schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        return [
            {"name": "echo", "description": "Say it back", "inputSchema": schema},
            {"name": "whoami", "description": "The user", "inputSchema": {"type": "object"}},
        ]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None
    ) -> dict[str, Any] | NeedsAuthorization:
        if name == "echo":
            return {"content": [{"type": "text", "text": str(arguments.get("text"))}], "isError": False}
        if name != "whoami":
            raise ToolNotFound(name)
        if not self.authorized:
            return NeedsAuthorization(LINK, "fl_test", "acme", "Authorize access to acme to continue.")
        return {"content": [{"type": "text", "text": f"you are {user_id}"}], "isError": False}

    async def wait_flow(self, flow_id: str, timeout: float) -> str:
        self.waits += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.done.wait(), timeout)
        if self.failed:  # once: the next flow is a new one
            self.failed = False
            return "failed"
        return "completed" if self.done.is_set() else "pending"

    async def catalog_version(self, user_id: str | None) -> int:
        return self.catalog

    def fail(self) -> None:
        """The flow being waited for fails (denied at the provider, or expired); a new one starts later."""
        self.failed = True
        self.done.set()
        self.done = asyncio.Event()

    def complete(self) -> None:
        self.authorized = True
        self.done.set()


Serve = Callable[..., Awaitable[tuple[str, FlagBackend]]]


@pytest.fixture
def mcp_serve(aiohttp_server: Any) -> Serve:
    """Start an aiohttp app on 127.0.0.1 (port 0) with McpServer over a fresh FlagBackend."""

    async def serve(middlewares: tuple[Any, ...] = (), **kw: Any) -> tuple[str, FlagBackend]:
        backend = FlagBackend()
        options: dict[str, Any] = {"require_api_key": False, "default_user": "alice", "version": "9.9"}
        options |= kw
        app = web.Application(middlewares=list(middlewares))
        backend.server = McpServer(backend, **options)
        backend.server.setup(app)
        server = await aiohttp_server(app, host="127.0.0.1", port=0)
        return str(server.make_url("/mcp")), backend

    return serve
