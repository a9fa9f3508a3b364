"""``/mcp``: a streamable-HTTP MCP server for both eras on one URL.

MCP 2026-07-28 (stateless: ``server/discover``, per-request ``_meta``, ``input_required``) is
served by engine.mcp.modern for every request engine.mcp.envelope.is_modern picks (the
``MCP-Protocol-Version: 2026-07-28`` header, ``server/discover``); GET and DELETE with that header
get 405. Everything else is the handshake era (sessions, the GET stream, -32042), served by
engine.mcp.handshake. This module is the HTTP edge both share:

POST carries one JSON-RPC message: requests are answered with ``application/json`` (or one SSE
event when the client accepts only ``text/event-stream``); notifications and responses get 202.
``Origin`` and, on a loopback listener, ``Host`` are checked (DNS rebinding): 403.

The caller's API key is checked by the app's middleware (``engine.api.auth``); with
``require_api_key`` this server also refuses a request the middleware did not authenticate, so a
missing wire-up fails closed. The end user is ``Keyturn-User-Id`` (``Arcade-User-ID``) or
``default_user``. Tools come from a ``ToolBackend``.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from engine import __version__
from engine.errors import KeyturnError
from engine.httpbody import BodyTooLarge, read_body
from engine.identity import IDENTITY
from engine.jsontext import JsonTextError, parse
from engine.mcp import envelope as env
from engine.mcp import protocol as p
from engine.mcp.backend import NeedsAuthorization, Relay, ToolBackend, ToolNotFound, UpstreamInput
from engine.mcp.handshake import HandshakeEra
from engine.mcp.httperrors import answering_errors, refused
from engine.mcp.httperrors import json_answer as _json
from engine.mcp.modern import ModernEra
from engine.mcp.request_state import KeySource, RequestStateSealer, fixed_key
from engine.mcp.resource import MCP_USER
from engine.net import is_loopback_host

log = structlog.get_logger("keyturn.mcp")

USER_HEADERS = ("Keyturn-User-Id", "Arcade-User-ID")
MAX_BODY = 4 * 1024 * 1024
MAX_USER_ID = 256

Origins = Iterable[str] | Callable[[], Iterable[str]]


class McpServer:
    """The MCP endpoint over a ``ToolBackend``; ``setup(app)`` mounts it (POST/GET/DELETE ``/mcp``).

    The engine's own server is built and mounted by ``engine.mcp.engine_backend.mount_mcp``.
    ``require_api_key`` and ``default_user`` may be changed while serving (a reload).
    """

    def __init__(
        self,
        backend: ToolBackend,
        *,
        allowed_origins: Origins = (),
        require_api_key: bool = True,
        default_user: str | None = None,
        server_name: str = "keyturn",
        version: str = __version__,
        max_sessions: int = 10_000,
        session_idle: float = 24 * 3600.0,
        keepalive: float = 15.0,
        elicitation_timeout: float = 600.0,
        instructions: str | None = None,
        state_keys: KeySource | None = None,
        input_wait: float = 20.0,
        listen_poll: float = 1.0,
        max_listeners: int = 1024,
    ) -> None:
        self.backend = backend
        self.allowed_origins = allowed_origins
        self.require_api_key = require_api_key
        self.default_user = default_user
        self.server_name = server_name
        self.version = version
        self.max_sessions = max_sessions
        self.session_idle = session_idle
        self.keepalive = keepalive
        self.elicitation_timeout = elicitation_timeout
        self.instructions = instructions or (
            "Tools run as the user named by the Keyturn-User-Id header; tokens never leave Keyturn."
        )
        # 2026-07-28: requestState sealed under a key derived from the root key (a random one when standalone)
        self.sealer = RequestStateSealer(
            state_keys or fixed_key(secrets.token_bytes(32)), ttl=elicitation_timeout
        )
        self.input_wait = input_wait  # how long a retry waits for the user's sign-in before asking again
        self.listen_poll = listen_poll
        self.max_listeners = max_listeners
        self.listeners: set[asyncio.Event] = set()  # open subscriptions/listen streams
        self.modern = ModernEra(self)
        self.handshake = HandshakeEra(self)
        self.sessions = self.handshake.sessions  # the open handshake-era sessions

    # ---- mounting --------------------------------------------------------------------------------
    def routes(self, path: str = "/mcp") -> list[web.RouteDef]:
        return [
            web.post(path, answering_errors(self.post)),
            web.get(path, answering_errors(self.get)),
            web.delete(path, answering_errors(self.delete)),
        ]

    def setup(self, app: web.Application, path: str = "/mcp") -> None:
        app.router.add_routes(self.routes(path))
        app.on_shutdown.append(self._shutdown)

    async def _shutdown(self, app: web.Application) -> None:
        self.close_all()

    def close_all(self) -> None:
        self.handshake.close_all()
        for stop in list(self.listeners):
            stop.set()

    # ---- checks ----------------------------------------------------------------------------------
    def _check_request(self, request: web.Request) -> None:
        local = is_loopback_host(_sock_host(request))
        allowed = {o.rstrip("/").lower() for o in _origins(self.allowed_origins)}
        origin = request.headers.get("Origin")
        if origin is not None:
            host = urlsplit(origin).hostname
            if origin.rstrip("/").lower() not in allowed and not (local and is_loopback_host(host)):
                raise refused(403, "origin_not_allowed", "Forbidden: Origin is not allowed for /mcp")
        if local:  # a loopback listener answers only loopback names (and allowed origins' hosts)
            host = request.url.host
            allowed_hosts = {urlsplit(o).hostname for o in allowed}
            if not is_loopback_host(host) and host not in allowed_hosts:
                raise refused(403, "host_not_allowed", "Forbidden: Host is not allowed for /mcp")
        if self.require_api_key and request.get(IDENTITY) is None:
            raise refused(
                401,
                "unauthorized",
                "Unauthorized: missing API key: send Authorization: Bearer <key>",
                headers={"WWW-Authenticate": 'Bearer realm="keyturn"'},
            )

    def caller(self, request: web.Request) -> str:
        """Who calls (for binding a requestState): the API key's id or config entry, an OAuth / JWT
        token's client (``oauth:<client_id>``), else ``anonymous``."""
        identity = request.get(IDENTITY)
        if identity is None:
            return "anonymous"
        key_id = getattr(identity, "id", None)
        if isinstance(key_id, str):
            return f"key:{key_id}"
        if isinstance(identity, dict):
            who = identity.get("client_id") or identity.get("name") or identity.get("id") or ""
            return f"{identity.get('kind', 'caller')}:{who}"
        return f"caller:{type(identity).__name__}"

    def user(self, request: web.Request) -> str | None:
        """The end user: an OAuth / JWT token's user (``engine.mcp.resource``), else
        ``Keyturn-User-Id``, ``Arcade-User-ID``, else ``default_user``."""
        token_user: str | None = request.get(MCP_USER)
        if token_user is not None:
            return token_user
        for header in USER_HEADERS:
            value = request.headers.get(header, "").strip()
            if len(value) > MAX_USER_ID:  # as REST answers body.user_id: no silent cut to another user
                raise p.Refused(
                    400, p.INVALID_REQUEST, f"Bad Request: {header} is longer than {MAX_USER_ID} characters"
                )
            if value:
                return value
        return self.default_user

    # ---- HTTP ------------------------------------------------------------------------------------
    async def post(self, request: web.Request) -> web.StreamResponse:
        self._check_request(request)
        try:
            raw = await read_body(
                request.content, MAX_BODY, length=request.content_length, what="Invalid Request: the message"
            )
        except BodyTooLarge as exc:
            return _json(p.error(None, p.INVALID_REQUEST, str(exc)), 413)
        try:
            message = parse(raw)
        except JsonTextError as exc:
            raise p.Refused(
                400, p.PARSE_ERROR, f"Parse error: the body is not valid JSON: {exc.reason}"
            ) from None
        try:
            p.check_message(message)
        except p.RpcError as exc:
            msg_id = message.get("id") if isinstance(message, dict) else None
            raise p.Refused(400, exc.code, exc.message, msg_id=msg_id) from None
        try:
            self.user(request)
        except p.Refused as exc:
            exc.msg_id = message.get("id")
            raise
        if env.is_modern(request.headers, message):
            return await self.modern.post(request, message)
        return await self.handshake.post(request, message)

    async def get(self, request: web.Request) -> web.StreamResponse:
        self._check_request(request)
        _no_stream_when_modern(request)
        return await self.handshake.stream(request)

    async def delete(self, request: web.Request) -> web.StreamResponse:
        self._check_request(request)
        _no_stream_when_modern(request)
        return self.handshake.delete(request)

    # ---- methods ---------------------------------------------------------------------------------
    async def backend_tools(self, request: web.Request) -> list[dict[str, Any]]:
        return await self.backend.list_tools(self.user(request))

    async def run_tool(
        self, request: web.Request, name: str, arguments: dict[str, Any], relay: Relay | None = None
    ) -> dict[str, Any] | NeedsAuthorization | UpstreamInput:
        """Call a tool for the request's user (both eras): a CallToolResult or ``NeedsAuthorization``.

        ``relay`` (2026-07-28 clients only) is passed on as a keyword, so a backend without it works.
        """
        try:
            if relay is None or not _takes_relay(self.backend):
                return await self.backend.call_tool(name, arguments, self.user(request))
            return await self.backend.call_tool(name, arguments, self.user(request), relay=relay)
        except ToolNotFound as exc:
            raise p.RpcError(p.INVALID_PARAMS, f"Unknown tool: {name[:128]}") from exc
        except KeyturnError as exc:
            return p.text_result(f"{exc.error}: {exc.msg}", is_error=True)

    async def wait_flow(self, flow_id: str, timeout: float) -> str:  # noqa: ASYNC109 - a long-poll bound
        try:
            return await self.backend.wait_flow(flow_id, timeout)
        except Exception as exc:  # a lost waiter answers "ask again", never a 500
            log.warning("mcp_flow_wait_failed", error=type(exc).__name__)
            return "pending"

    async def catalog_version(self, user: str | None) -> Any:
        """Changes whenever the tools a backend serves change (``subscriptions/listen``)."""
        version = getattr(self.backend, "catalog_version", None)
        if version is None:
            return 0
        try:
            return await version(user)
        except Exception as exc:  # a failing refresh keeps the last version
            log.warning("mcp_catalog_version_failed", error=type(exc).__name__)
            return None


def _takes_relay(backend: ToolBackend) -> bool:
    """Whether ``backend.call_tool`` takes ``relay`` (the engine's does; small test backends may not)."""
    try:
        return "relay" in inspect.signature(backend.call_tool).parameters
    except (TypeError, ValueError):
        return False


def _no_stream_when_modern(request: web.Request) -> None:
    """2026-07-28 has no GET stream and no sessions: GET/DELETE at that version are 405."""
    if request.headers.get(env.VERSION_HEADER) in env.MODERN_VERSIONS:
        raise refused(
            405,
            "method_not_allowed",
            f"Method Not Allowed: MCP {env.LATEST_MODERN} has no {request.method} on /mcp (POST only)",
            headers={"Allow": "POST"},
        )


def _origins(value: Origins) -> Iterable[str]:
    return value() if callable(value) else value


def _sock_host(request: web.Request) -> str | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and sockname:
        return str(sockname[0])
    return None
