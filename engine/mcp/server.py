"""``/mcp``: a streamable-HTTP MCP server (2025-11-25; 2025-06-18, 2025-03-26 and 2024-11-05 clients too).

POST carries one JSON-RPC message; requests are answered with ``application/json``; notifications
and responses get 202. ``initialize`` opens a session (``Mcp-Session-Id``); GET opens the session's
server-to-client SSE stream; DELETE ends it. ``Origin`` is checked (DNS rebinding). The caller is
an application with an API key (unless ``mcp.auth: none``); the end user is named by
``Keyturn-User-Id`` (``Arcade-User-ID`` accepted) or ``mcp.default_user``.

``tools/call`` runs through the same execute path as ``/v1/tools/execute``. When the user must
authorize first, a client that declared ``elicitation.url`` gets error -32042 with the flow link and,
once the flow completes, ``notifications/elicitation/complete`` on its stream; any other client gets a
tool result with ``isError: true`` whose text carries the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import secrets
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from engine import __version__
from engine.api.auth import bearer
from engine.api.state import FLOWS, SETTINGS, TOOLS
from engine.errors import KeyturnError, NotFound, ValidationFailed
from engine.tools.formats import input_json_schema

log = structlog.get_logger("keyturn.mcp")

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST = PROTOCOL_VERSIONS[0]
MAX_SESSIONS = 10_000
MAX_BODY = 4 * 1024 * 1024
URL_ELICITATION_REQUIRED = -32042
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = (
    -32700,
    -32600,
    -32601,
    -32602,
    -32603,
)
USER_HEADERS = ("Keyturn-User-Id", "Arcade-User-ID")
_CLOSED: dict[str, Any] = {}  # queued to end a session's stream


@dataclasses.dataclass
class Session:
    id: str
    protocol_version: str
    capabilities: dict[str, Any]
    client_info: dict[str, Any]
    queue: asyncio.Queue[dict[str, Any]] = dataclasses.field(default_factory=asyncio.Queue)
    tasks: set[asyncio.Task[None]] = dataclasses.field(default_factory=set)
    last_seen: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def url_elicitation(self) -> bool:
        elicitation = self.capabilities.get("elicitation")
        return isinstance(elicitation, dict) and isinstance(elicitation.get("url"), dict)


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def _is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class McpServer:
    def __init__(self) -> None:
        self.sessions: OrderedDict[str, Session] = OrderedDict()

    def setup(self, app: web.Application, path: str = "/mcp") -> None:
        app.router.add_post(path, self.post)
        app.router.add_get(path, self.get)
        app.router.add_delete(path, self.delete)
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        for session in list(self.sessions.values()):
            self._close(session)

    # ---- checks ---------------------------------------------------------------------------------
    def _check_origin(self, request: web.Request) -> None:
        origin = request.headers.get("Origin")
        if not origin:
            return
        settings = request.app[SETTINGS].current
        allowed = {o.rstrip("/") for o in settings.config.mcp.allowed_origins}
        public = urlsplit(settings.public_url)
        allowed.add(f"{public.scheme}://{public.netloc}")
        parts = urlsplit(origin)
        if origin.rstrip("/") in allowed:
            return
        if _is_loopback_host(parts.hostname) and _is_loopback_host(public.hostname):
            return
        raise web.HTTPForbidden(
            text=json.dumps({"error": "origin_not_allowed", "msg": "Origin is not allowed"}),
            content_type="application/json",
        )

    async def _check_caller(self, request: web.Request) -> None:
        config = request.app[SETTINGS].current.config
        if config.mcp.auth == "none":
            return
        from engine.api.services import ApiKeys

        presented = bearer(request)
        identity = await ApiKeys(request.app).verify(presented) if presented else None
        if identity is None:
            raise web.HTTPUnauthorized(
                text=json.dumps({"code": 401, "error": "unauthorized", "msg": "missing or invalid API key"}),
                content_type="application/json",
                headers={"WWW-Authenticate": 'Bearer realm="keyturn"'},
            )

    def _user(self, request: web.Request) -> str | None:
        for header in USER_HEADERS:
            value = request.headers.get(header, "").strip()
            if value:
                return value[:256]
        return request.app[SETTINGS].current.config.mcp.default_user

    def _session(self, request: web.Request) -> Session:
        sid = request.headers.get("Mcp-Session-Id")
        if not sid:
            raise web.HTTPBadRequest(
                text=_dumps(_error(None, INVALID_REQUEST, "Mcp-Session-Id header is required")),
                content_type="application/json",
            )
        session = self.sessions.get(sid)
        if session is None:
            raise web.HTTPNotFound(
                text=_dumps(_error(None, INVALID_REQUEST, "unknown or terminated session")),
                content_type="application/json",
            )
        version = request.headers.get("MCP-Protocol-Version")
        if version and version not in PROTOCOL_VERSIONS:
            raise web.HTTPBadRequest(
                text=_dumps(
                    _error(None, INVALID_REQUEST, f"unsupported MCP-Protocol-Version {version[:20]}")
                ),
                content_type="application/json",
            )
        session.last_seen = time.monotonic()
        self.sessions.move_to_end(sid)
        return session

    # ---- HTTP ------------------------------------------------------------------------------------
    async def post(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        await self._check_caller(request)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.json_response(_error(None, INVALID_REQUEST, "message too large"), status=413)
        try:
            message = json.loads(raw)
        except ValueError:
            return web.json_response(
                _error(None, PARSE_ERROR, "Parse error: the body is not JSON"), status=400
            )
        if isinstance(message, list):
            return web.json_response(
                _error(None, INVALID_REQUEST, "JSON-RPC batches are not supported"), status=400
            )
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return web.json_response(_error(None, INVALID_REQUEST, "not a JSON-RPC 2.0 message"), status=400)
        method = message.get("method")
        if method == "initialize":
            return await self._initialize(request, message)
        session = self._session(request)
        if not isinstance(method, str):  # a response or error from the client
            return web.Response(status=202)
        if "id" not in message:  # a notification
            return web.Response(status=202)
        msg_id = message.get("id")
        try:
            result = await self._dispatch(request, session, method, message.get("params") or {})
            answer = {"jsonrpc": "2.0", "id": msg_id, "result": result}
        except RpcError as exc:
            answer = _error(msg_id, exc.code, exc.message, exc.data)
        return self._reply(request, answer)

    def _reply(self, request: web.Request, answer: dict[str, Any]) -> web.StreamResponse:
        accept = request.headers.get("Accept", "*/*")
        if "application/json" in accept or "*/*" in accept or "text/event-stream" not in accept:
            return web.json_response(answer)
        body = f"event: message\ndata: {_dumps(answer)}\n\n"
        return web.Response(text=body, content_type="text/event-stream")

    async def _initialize(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return web.json_response(_error(message.get("id"), INVALID_PARAMS, "params must be an object"))
        asked = params.get("protocolVersion")
        version = asked if asked in PROTOCOL_VERSIONS else LATEST
        sid = secrets.token_urlsafe(24)
        raw_caps, raw_info = params.get("capabilities"), params.get("clientInfo")
        caps: dict[str, Any] = raw_caps if isinstance(raw_caps, dict) else {}
        info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
        self.sessions[sid] = Session(sid, version, caps, info)
        while len(self.sessions) > MAX_SESSIONS:
            _, old = self.sessions.popitem(last=False)
            self._close(old)
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "keyturn", "version": __version__},
            "instructions": "Tools run as the user named by the Keyturn-User-Id header; "
            "tokens never leave Keyturn.",
        }
        response = web.json_response({"jsonrpc": "2.0", "id": message.get("id"), "result": result})
        response.headers["Mcp-Session-Id"] = sid
        return response

    async def get(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        await self._check_caller(request)
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise web.HTTPMethodNotAllowed("GET", ["POST", "DELETE"])
        session = self._session(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        response.headers["Mcp-Session-Id"] = session.id
        await response.prepare(request)
        try:
            while session.id in self.sessions:
                try:
                    event = await asyncio.wait_for(session.queue.get(), 15)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if event is _CLOSED:  # the session ended
                    break
                await response.write(f"event: message\ndata: {_dumps(event)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    async def delete(self, request: web.Request) -> web.StreamResponse:
        self._check_origin(request)
        await self._check_caller(request)
        session = self._session(request)
        self._close(session)
        return web.Response(status=200)

    def _close(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for task in session.tasks:
            task.cancel()
        session.queue.put_nowait(_CLOSED)  # ends an open GET stream at once

    # ---- methods ---------------------------------------------------------------------------------
    async def _dispatch(self, request: web.Request, session: Session, method: str, params: Any) -> Any:
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object")
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": await self._tools(request)}
        if method == "tools/call":
            return await self._call(request, session, params)
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method[:64]}")

    async def _tools(self, request: web.Request) -> list[dict[str, Any]]:
        out = []
        for tool in await request.app[TOOLS].registry.all():
            d = tool.definition
            entry: dict[str, Any] = {
                "name": f"{d['toolkit']['name']}_{d['name']}",
                "title": f"{d['toolkit']['name']}.{d['name']}",
                "description": d.get("description") or "",
                "inputSchema": input_json_schema(d),
            }
            out.append(entry)
        return out

    async def _call(self, request: web.Request, session: Session, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise RpcError(INVALID_PARAMS, "tools/call needs name (string) and arguments (object)")
        runner = request.app[TOOLS]
        user = self._user(request)
        try:
            answer = await runner.execute(name, arguments, user)
        except NotFound as exc:
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:128]}") from exc
        except ValidationFailed as exc:
            return _text_result(exc.msg, error=True)
        except KeyturnError as exc:
            return _text_result(f"{exc.error}: {exc.msg}", error=True)
        output = answer.get("output") or {}
        pending = output.get("authorization")
        if pending and pending.get("url"):
            return self._needs_authorization(request, session, pending)
        if not answer.get("success"):
            error = output.get("error") or {}
            return _text_result(str(error.get("message") or "the tool failed"), error=True)
        value = output.get("value")
        result = _text_result(value if isinstance(value, str) else _dumps(value))
        if isinstance(value, dict):
            result["structuredContent"] = value
        return result

    def _needs_authorization(
        self, request: web.Request, session: Session, pending: dict[str, Any]
    ) -> dict[str, Any]:
        url = pending["url"]
        provider = pending.get("provider_id") or "the provider"
        message = f"Authorize access to {provider} to continue."
        if not session.url_elicitation:
            return _text_result(
                f"Authorization required: open {url} to connect your {provider} account, "
                "then call this tool again.",
                error=True,
            )
        elicitation_id = f"el_{secrets.token_urlsafe(12)}"
        task = asyncio.create_task(self._complete_later(request.app, session, pending["id"], elicitation_id))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)
        raise RpcError(
            URL_ELICITATION_REQUIRED,
            "URL elicitation required",
            {
                "elicitations": [
                    {"mode": "url", "elicitationId": elicitation_id, "url": url, "message": message}
                ]
            },
        )

    async def _complete_later(
        self, app: web.Application, session: Session, flow_id: str, elicitation_id: str
    ) -> None:
        flows = app[FLOWS]
        deadline = time.monotonic() + float(app[SETTINGS].current.config.security.flow_ttl)
        with contextlib.suppress(asyncio.CancelledError):
            while time.monotonic() < deadline and session.id in self.sessions:
                try:
                    answer = await flows.status(flow_id, 50)
                except KeyturnError:
                    return
                if answer["status"] == "completed":
                    await session.queue.put(
                        {
                            "jsonrpc": "2.0",
                            "method": "notifications/elicitation/complete",
                            "params": {"elicitationId": elicitation_id},
                        }
                    )
                    return
                if answer["status"] == "failed":
                    return


def _text_result(text: str, *, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


def _error(msg_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": err}


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)
