"""Upstream MCP servers (``mcp.servers[]``) bridged per user, with the user's access token as bearer.

engine.mcp.upstream speaks to each server in its era (2026-07-28 after ``server/discover``, else
the ``initialize`` handshake). Tools appear as ``<server id>_<tool>``; listing uses the calling
user's token when there is a grant, else the last list any user saw. A call without a grant answers
with the authorization flow; an upstream 401 refreshes the token once and retries. An upstream's
own ``input_required`` goes to a 2026-07-28 client as it came (``UpstreamInput``; engine.mcp.modern
wraps its ``requestState`` in Keyturn's sealed one and hands it back untouched on the retry). The
token only ever goes to the configured upstream URL, never back to the MCP client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from engine.config.model import Config, McpServerConfig
from engine.errors import KeyturnError
from engine.flows.service import FlowService
from engine.lifecycle.refresh import Refresher
from engine.mcp.backend import NeedsAuthorization, Relay, UpstreamInput
from engine.mcp.upstream import UpstreamClient, UpstreamUnauthorized

log = structlog.get_logger("keyturn.mcp.bridge")


class McpBridge:
    def __init__(
        self,
        config: Callable[[], Config],
        session: aiohttp.ClientSession,
        flows: FlowService,
        refresher: Refresher,
    ) -> None:
        self.config = config
        self.session = session
        self.flows = flows
        self.refresher = refresher
        self._tools: dict[str, list[dict[str, Any]]] = {}  # server id -> its tools (last good list)
        self._listed_at: dict[str, float] = {}
        self.eras: dict[str, str] = {}  # upstream url -> "modern" | "legacy"
        self.version = 0  # changes when any upstream's tool list does (subscriptions/listen)

    def client(self, server: McpServerConfig) -> UpstreamClient:
        return UpstreamClient(self.session, server, self.eras)

    async def ensure_fresh(self, user_id: str | None, max_age: float) -> None:
        """List again when any server's list is older than ``max_age`` seconds."""
        now = time.monotonic()
        if any(now - self._listed_at.get(s.id, -1e18) > max_age for s in self.servers()):
            await self.list_tools(user_id)

    def servers(self) -> list[McpServerConfig]:
        return list(self.config().mcp.servers)

    def owner(self, name: str) -> tuple[McpServerConfig, str] | None:
        for server in self.servers():
            prefix = f"{server.id}_"
            if name.startswith(prefix):
                return server, name[len(prefix) :]
        return None

    async def _token(self, server: McpServerConfig, user_id: str | None) -> tuple[str | None, Any]:
        if server.requires_auth is None:
            return None, None
        if not user_id:
            return None, None
        provider = self.flows.find_provider({"id": server.requires_auth.provider})
        grant = await self.refresher.usable_grant(user_id, provider.id)
        if grant is None or not set(server.requires_auth.scopes) <= set(grant.scopes):
            return None, None
        return grant.access_token, grant

    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for server in self.servers():
            try:
                token, _ = await self._token(server, user_id)
                if token is not None or server.requires_auth is None:
                    result = await self.client(server).call(token, "tools/list", {})
                    tools = [
                        t for t in (result or {}).get("tools", []) if isinstance(t, dict) and "name" in t
                    ]
                    if _fingerprint(tools) != _fingerprint(self._tools.get(server.id)):
                        self.version += 1
                    self._tools[server.id] = tools
                    self._listed_at[server.id] = time.monotonic()
            except (UpstreamUnauthorized, KeyturnError) as exc:
                log.warning("upstream_list_failed", server=server.id, error=type(exc).__name__)
            for tool in self._tools.get(server.id, []):
                out.append({**tool, "name": f"{server.id}_{tool['name']}"})
        return out

    def _schema(self, server: McpServerConfig, tool: str) -> dict[str, Any] | None:
        for known in self._tools.get(server.id, []):
            if known.get("name") == tool and isinstance(known.get("inputSchema"), dict):
                schema: dict[str, Any] = known["inputSchema"]
                return schema
        return None

    async def call_tool(
        self,
        server: McpServerConfig,
        tool: str,
        arguments: dict[str, Any],
        user_id: str | None,
        relay: Relay | None = None,
    ) -> dict[str, Any] | NeedsAuthorization | UpstreamInput:
        requirement = server.requires_auth
        token, grant = await self._token(server, user_id)
        if requirement is not None and token is None:
            if not user_id:
                return _error_result("this tool needs a user: send the Keyturn-User-Id header")
            pending = await self.flows.authorize(
                user_id=user_id,
                requirement={"id": requirement.provider},
                scopes=tuple(requirement.scopes),
                next_uri=None,
            )
            if pending.status != "completed":
                return NeedsAuthorization(
                    url=str(pending.url),
                    flow_id=str(pending.id),
                    provider_id=requirement.provider,
                    message=f"Authorize access to {requirement.provider} to continue.",
                )
            token, grant = await self._token(server, user_id)
        client = self.client(server)
        params: dict[str, Any] = {"name": tool, "arguments": arguments}
        if relay is not None and relay.input_responses is not None:
            params["inputResponses"] = relay.input_responses
        if relay is not None and relay.request_state is not None:
            params["requestState"] = relay.request_state
        options: dict[str, Any] = {
            "capabilities": relay.capabilities if relay is not None else {},
            "input_schema": self._schema(server, tool),
        }
        try:
            result = await client.call(token, "tools/call", params, **options)
        except UpstreamUnauthorized:
            if grant is None:
                return _error_result(f"upstream MCP server {server.id} refused the request (401)")
            refreshed = await self.refresher.refresh(grant.id, force=True)
            if refreshed.outcome != "refreshed" or refreshed.grant is None:
                assert requirement is not None and user_id is not None
                pending = await self.flows.authorize(
                    user_id=user_id,
                    requirement={"id": requirement.provider},
                    scopes=tuple(requirement.scopes),
                    next_uri=None,
                )
                if pending.url and pending.id:
                    return NeedsAuthorization(
                        url=pending.url,
                        flow_id=pending.id,
                        provider_id=requirement.provider,
                        message=f"Authorize access to {requirement.provider} again.",
                    )
                return _error_result(f"upstream MCP server {server.id} refused the user's token")
            try:
                result = await client.call(refreshed.grant.access_token, "tools/call", params, **options)
            except UpstreamUnauthorized:
                return _error_result(f"upstream MCP server {server.id} refused the user's refreshed token")
        except KeyturnError as exc:
            return _error_result(exc.msg)
        if not isinstance(result, dict):
            return _error_result(f"upstream MCP server {server.id} sent no tool result")
        if result.get("resultType") == "input_required":
            if relay is None:
                return _error_result(
                    f"upstream MCP server {server.id} asks for input this client cannot give "
                    "(it speaks an MCP revision before 2026-07-28)"
                )
            requests, state = result.get("inputRequests"), result.get("requestState")
            return UpstreamInput(
                requests if isinstance(requests, dict) else None, state if isinstance(state, str) else None
            )
        return {k: v for k, v in result.items() if k != "resultType"}


def _fingerprint(tools: list[dict[str, Any]] | None) -> str:
    return json.dumps(tools, sort_keys=True, default=str) if tools is not None else ""


def _error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}
