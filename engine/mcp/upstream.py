"""A small streamable-HTTP MCP client over aiohttp for upstream servers, speaking both eras.

The era of an upstream is found once per URL (streamable-http "Backward Compatibility"):
``server/discover`` at 2026-07-28 first; a result naming 2026-07-28, or a recognized modern error
(-32020..-32022) that names it, makes the server modern; anything else falls back to the
``initialize`` handshake (2025-11-25), each call then opening and ending its own session. Modern
calls carry ``_meta`` (version, capabilities, client info) and the mirrored headers (``Mcp-Method``,
``Mcp-Name``, ``Mcp-Param-*`` for a tool's ``x-mcp-header`` properties). A modern upstream that
later refuses the version is asked again from discovery. The user's token goes only to the
configured upstream URL.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from engine import jsontext
from engine.config.model import McpServerConfig
from engine.errors import ProviderError, Unavailable
from engine.httpbody import BodyTooLarge, read_body
from engine.mcp import envelope as env

LEGACY = "2025-11-25"
MODERN = env.LATEST_MODERN
MAX_ANSWER = 8 * 1024 * 1024
CLIENT_INFO = {"name": "keyturn-bridge", "version": "1"}
_MODERN_ERRORS = (
    env.HEADER_MISMATCH,
    env.MISSING_REQUIRED_CLIENT_CAPABILITY,
    env.UNSUPPORTED_PROTOCOL_VERSION,
)
_HEADER_SAFE = re.compile(r"^[\x20-\x7e]*$")


class UpstreamUnauthorized(Exception):
    """The upstream server refused the token (HTTP 401)."""


class _Answer:
    def __init__(self, status: int, message: dict[str, Any] | None, session_id: str | None) -> None:
        self.status = status
        self.message = message
        self.session_id = session_id

    @property
    def error(self) -> dict[str, Any] | None:
        err = self.message.get("error") if self.message else None
        return err if isinstance(err, dict) else None


class UpstreamClient:
    def __init__(
        self, session: aiohttp.ClientSession, server: McpServerConfig, eras: dict[str, str] | None = None
    ) -> None:
        self.session = session
        self.server = server
        self.eras = eras if eras is not None else {}  # url -> "modern" | "legacy", shared by a bridge
        self.what = f"upstream MCP server {server.id}"

    async def call(
        self,
        token: str | None,
        method: str,
        params: dict[str, Any],
        *,
        capabilities: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
    ) -> Any:
        """The result of ``method`` (an ``input_required`` result too); errors as ``KeyturnError``."""
        for _ in range(2):
            era = self.eras.get(self.server.url) or await self._discover(token)
            self.eras[self.server.url] = era
            if era == "legacy":
                return await self._legacy(token, method, params)
            answer = await self._modern(token, method, params, capabilities or {}, input_schema)
            err = answer.error
            if err is not None and err.get("code") == env.UNSUPPORTED_PROTOCOL_VERSION:
                self.eras.pop(self.server.url, None)  # it changed: find its era again
                continue
            return self._result(answer, method)
        raise ProviderError(
            f"{self.what} refuses every protocol version Keyturn speaks", kind="upstream_error"
        )

    # ---- the modern era ------------------------------------------------------------------------
    def _modern_headers(self, token: str | None, method: str) -> dict[str, str]:
        headers = _base_headers(token)
        headers.update({env.VERSION_HEADER: MODERN, env.METHOD_HEADER: method})
        return headers

    def _meta(self, capabilities: dict[str, Any]) -> dict[str, Any]:
        return {
            env.META_PROTOCOL_VERSION: MODERN,
            env.META_CLIENT_CAPABILITIES: capabilities,
            env.META_CLIENT_INFO: CLIENT_INFO,
        }

    async def _discover(self, token: str | None) -> str:
        answer = await self._send(
            self._modern_headers(token, "server/discover"), "server/discover", {"_meta": self._meta({})}
        )
        message = answer.message or {}
        result = message.get("result")
        if answer.status < 300 and isinstance(result, dict):
            return "modern" if MODERN in (result.get("supportedVersions") or ()) else "legacy"
        err = answer.error
        if err is not None and err.get("code") in _MODERN_ERRORS:
            data = err.get("data")
            supported = data.get("supported") if isinstance(data, dict) else None
            if not isinstance(supported, list) or MODERN in supported:
                return "modern"
        return "legacy"

    async def _modern(
        self,
        token: str | None,
        method: str,
        params: dict[str, Any],
        capabilities: dict[str, Any],
        input_schema: dict[str, Any] | None,
    ) -> _Answer:
        headers = self._modern_headers(token, method)
        name = params.get("name") if method == "tools/call" else None
        if isinstance(name, str):
            headers[env.NAME_HEADER] = encode_header_value(name)
            headers.update(param_headers(input_schema, params.get("arguments") or {}))
        return await self._send(headers, method, {**params, "_meta": self._meta(capabilities)})

    # ---- the handshake era ---------------------------------------------------------------------
    async def _legacy(self, token: str | None, method: str, params: dict[str, Any]) -> Any:
        headers = _base_headers(token)
        init = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": CLIENT_INFO}
        opened = await self._send(headers, "initialize", init)
        result = self._result(opened, "initialize")
        if opened.session_id:
            headers["Mcp-Session-Id"] = opened.session_id
        version = result.get("protocolVersion") if isinstance(result, dict) else None
        headers[env.VERSION_HEADER] = version if isinstance(version, str) else LEGACY
        try:
            await self._send(headers, "notifications/initialized", None, notification=True)
            return self._result(await self._send(headers, method, params), method)
        finally:
            if opened.session_id:
                try:
                    async with self.session.delete(
                        self.server.url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)
                    ):
                        pass
                except (aiohttp.ClientError, TimeoutError):
                    pass

    # ---- the wire ------------------------------------------------------------------------------
    def _result(self, answer: _Answer, method: str) -> Any:
        err = answer.error
        if err is not None:
            raise ProviderError(
                f"{self.what}: {str(err.get('message', 'error'))[:200]}", kind="upstream_error"
            )
        if answer.status >= 400:
            raise ProviderError(
                f"{self.what} answered HTTP {answer.status} to {method}",
                kind="upstream_error",
                retryable=answer.status >= 500,
            )
        if answer.message is None:
            raise ProviderError(f"{self.what} sent no answer to {method}", kind="upstream_error")
        return answer.message.get("result")

    async def _send(
        self,
        headers: dict[str, str],
        method: str,
        params: dict[str, Any] | None,
        *,
        notification: bool = False,
    ) -> _Answer:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        msg_id = None
        if not notification:
            msg_id = secrets.token_hex(6)
            message["id"] = msg_id
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
                        what=f"{self.what}'s answer to {method}",
                        enough=_sse_answered(content_type, msg_id),
                    )
                except BodyTooLarge as exc:
                    raise ProviderError(str(exc), kind="upstream_error") from None
                found = None if notification else _find_answer(raw, content_type, msg_id)
                return _Answer(resp.status, found, resp.headers.get("Mcp-Session-Id"))
        except TimeoutError:
            raise Unavailable(f"{self.what} did not answer {method} in time", retry_after=1) from None
        except aiohttp.ClientError as exc:
            raise Unavailable(
                f"{self.what} cannot be reached ({type(exc).__name__})", retry_after=1
            ) from None


def _base_headers(token: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def encode_header_value(value: str) -> str:
    """A header value as the text's "Value Encoding" says: plain when safe, else ``=?base64?...?=``."""
    sentinel = value.startswith("=?base64?") and value.endswith("?=")
    if _HEADER_SAFE.fullmatch(value) and value == value.strip() and not sentinel:
        return value
    return f"=?base64?{base64.b64encode(value.encode()).decode()}?="


def param_headers(schema: Any, arguments: dict[str, Any]) -> dict[str, str]:
    """``Mcp-Param-{name}`` for each property reachable through ``properties`` with ``x-mcp-header``."""
    out: dict[str, str] = {}

    def walk(node: Any, value: Any) -> None:
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or not isinstance(value, dict):
            return
        for key, sub in props.items():
            if key not in value or value[key] is None or not isinstance(sub, dict):
                continue
            token = sub.get("x-mcp-header")
            item = value[key]
            if isinstance(token, str) and isinstance(item, str | int | bool) and not isinstance(item, float):
                text = ("true" if item else "false") if isinstance(item, bool) else str(item)
                out[f"Mcp-Param-{token}"] = encode_header_value(text)
            walk(sub, item)

    walk(schema, arguments)
    return out


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
        if isinstance(item, dict) and (
            item.get("id") == msg_id or (item.get("id") is None and "error" in item)
        ):
            return item
    return None
