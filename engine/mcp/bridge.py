"""Upstream MCP servers (``mcp.servers[]``) bridged per user, with the user's access token as bearer.

A small streamable-HTTP MCP client over aiohttp: each call initializes a session with the user's
token, sends the request, and ends the session. Tools appear as ``<server id>_<tool>``; listing uses
the calling user's token when there is a grant, else the last list any user saw. A call without a
grant answers with the authorization flow; an upstream 401 refreshes the token once and retries.
The token only ever goes to the configured upstream URL, never back to the MCP client.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from engine import jsontext
from engine.config.model import Config, McpServerConfig
from engine.errors import KeyturnError, ProviderError, Unavailable
from engine.flows.service import FlowService
from engine.httpbody import BodyTooLarge, read_body
from engine.lifecycle.refresh import Refresher
from engine.mcp.backend import NeedsAuthorization

log = structlog.get_logger("keyturn.mcp.bridge")
PROTOCOL = "2025-06-18"
MAX_ANSWER = 8 * 1024 * 1024


class UpstreamUnauthorized(Exception):
    """The upstream server refused the token (HTTP 401)."""


class UpstreamClient:
    def __init__(self, session: aiohttp.ClientSession, server: McpServerConfig) -> None:
        self.session = session
        self.server = server

    async def call(self, token: str | None, method: str, params: dict[str, Any]) -> Any:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        init = {
            "protocolVersion": PROTOCOL,
            "capabilities": {},
            "clientInfo": {"name": "keyturn-bridge", "version": "1"},
        }
        _, sid, version = await self._post(headers, "initialize", init, want_session=True)
        if sid:
            headers["Mcp-Session-Id"] = sid
        headers["MCP-Protocol-Version"] = version or PROTOCOL
        try:
            await self._post(headers, "notifications/initialized", None, notification=True)
            result, _, _ = await self._post(headers, method, params)
            return result
        finally:
            if sid:
                try:
                    async with self.session.delete(
                        self.server.url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
                    ):
                        pass
                except (aiohttp.ClientError, TimeoutError):
                    pass

    async def _post(
        self,
        headers: dict[str, str],
        method: str,
        params: dict[str, Any] | None,
        *,
        notification: bool = False,
        want_session: bool = False,
    ) -> tuple[Any, str | None, str | None]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        msg_id = None
        if not notification:
            msg_id = secrets.token_hex(6)
            message["id"] = msg_id
        what = f"upstream MCP server {self.server.id}"
        try:
            async with self.session.post(
                self.server.url,
                json=message,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=float(self.server.timeout)),
            ) as resp:
                if resp.status == 401:
                    raise UpstreamUnauthorized()
                content_type = resp.headers.get("Content-Type", "")
                try:
                    raw = await read_body(
                        resp.content,
                        MAX_ANSWER,
                        length=resp.content_length,
                        what=f"{what}'s answer to {method}",
                        enough=_sse_answered(content_type, msg_id),
                    )
                except BodyTooLarge as exc:
                    raise ProviderError(str(exc), kind="upstream_error") from None
                if notification:
                    return None, None, None
                if resp.status >= 400:
                    raise ProviderError(
                        f"{what} answered HTTP {resp.status} to {method}",
                        kind="upstream_error",
                        retryable=resp.status >= 500,
                    )
                answer = _find_answer(raw, content_type, msg_id)
                sid = resp.headers.get("Mcp-Session-Id") if want_session else None
        except TimeoutError:
            raise Unavailable(f"{what} did not answer {method} in time", retry_after=1) from None
        except aiohttp.ClientError as exc:
            raise Unavailable(f"{what} cannot be reached ({type(exc).__name__})", retry_after=1) from None
        if answer is None:
            raise ProviderError(f"{what} sent no answer to {method}", kind="upstream_error")
        if "error" in answer:
            err = answer["error"] or {}
            raise ProviderError(f"{what}: {str(err.get('message', 'error'))[:200]}", kind="upstream_error")
        result = answer.get("result")
        version = result.get("protocolVersion") if isinstance(result, dict) and want_session else None
        return result, sid, version


def _sse_answered(content_type: str, msg_id: str | None) -> Callable[[bytes], bool] | None:
    """For an SSE answer: stop reading once the event answering ``msg_id`` has arrived."""
    if "text/event-stream" not in content_type or msg_id is None:
        return None
    return lambda raw: (
        raw.endswith((b"\n\n", b"\r\n\r\n")) and _find_answer(raw, content_type, msg_id) is not None
    )


def _find_answer(raw: bytes, content_type: str, msg_id: str | None) -> dict[str, Any] | None:
    text = raw.decode("utf-8", errors="replace")
    candidates: list[Any] = []
    if "text/event-stream" in content_type:
        for line in text.splitlines():
            if line.startswith("data:"):
                try:
                    candidates.append(jsontext.parse_peer(line[5:].strip()))
                except ValueError:
                    continue
    elif text.strip():
        try:
            candidates.append(jsontext.parse_peer(text))
        except ValueError:
            return None
    for item in candidates:
        if isinstance(item, dict) and item.get("id") == msg_id:
            return item
    return None


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
                    result = await UpstreamClient(self.session, server).call(token, "tools/list", {})
                    tools = [
                        t for t in (result or {}).get("tools", []) if isinstance(t, dict) and "name" in t
                    ]
                    self._tools[server.id] = tools
            except (UpstreamUnauthorized, KeyturnError) as exc:
                log.warning("upstream_list_failed", server=server.id, error=type(exc).__name__)
            for tool in self._tools.get(server.id, []):
                out.append({**tool, "name": f"{server.id}_{tool['name']}"})
        return out

    async def call_tool(
        self, server: McpServerConfig, tool: str, arguments: dict[str, Any], user_id: str | None
    ) -> dict[str, Any] | NeedsAuthorization:
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
        client = UpstreamClient(self.session, server)
        try:
            result = await client.call(token, "tools/call", {"name": tool, "arguments": arguments})
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
                result = await client.call(
                    refreshed.grant.access_token, "tools/call", {"name": tool, "arguments": arguments}
                )
            except UpstreamUnauthorized:
                return _error_result(f"upstream MCP server {server.id} refused the user's refreshed token")
        except KeyturnError as exc:
            return _error_result(exc.msg)
        if not isinstance(result, dict):
            return _error_result(f"upstream MCP server {server.id} sent no tool result")
        return result


def _error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}
