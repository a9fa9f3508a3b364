"""``/mcp`` in the handshake era (2025-11-25; 2025-06-18 and 2025-03-26 clients too): sessions.

``initialize`` negotiates the version and opens a session (``Mcp-Session-Id``, random); later
messages need that header (400 without, 404 unknown or ended). GET with ``Accept:
text/event-stream`` opens the session's server-to-client stream; DELETE ends the session. A call
that needs authorization becomes URL-mode elicitation (-32042, then
``notifications/elicitation/complete`` on the session's stream) for a client that declared
``elicitation.url``, and an ``isError`` result carrying the link otherwise.

The HTTP edge (checks, body parsing, the era switch) is engine.mcp.server's; this module depends
only on the host protocol (engine.mcp.host).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from typing import Any

import structlog
from aiohttp import web

from engine.errors import KeyturnError
from engine.mcp import protocol as p
from engine.mcp.backend import NeedsAuthorization, UpstreamInput
from engine.mcp.host import HandshakeHost
from engine.mcp.httperrors import json_answer, refused, reply

log = structlog.get_logger("keyturn.mcp")


class HandshakeEra:
    """The session-bound half of ``/mcp``: ``initialize``, the GET stream, DELETE, -32042."""

    def __init__(self, server: HandshakeHost) -> None:
        self.server = server
        self.sessions: OrderedDict[str, p.Session] = OrderedDict()

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            self.end(session)

    def end(self, session: p.Session) -> None:
        self.sessions.pop(session.id, None)
        session.close()

    def session(self, request: web.Request) -> p.Session:
        sid = request.headers.get("Mcp-Session-Id")
        if not sid:
            raise p.Refused(400, p.INVALID_REQUEST, "Bad Request: Mcp-Session-Id header is required")
        session = self.sessions.get(sid)
        if session is None:
            raise p.Refused(404, p.INVALID_REQUEST, "Session not found: unknown or terminated Mcp-Session-Id")
        version = request.headers.get("MCP-Protocol-Version")
        if version is not None and version not in p.PROTOCOL_VERSIONS:
            supported = ", ".join(p.PROTOCOL_VERSIONS)
            raise p.Refused(
                400,
                p.INVALID_REQUEST,
                f"Bad Request: unsupported MCP-Protocol-Version {version[:32]!r} (supported: {supported})",
            )
        session.last_seen = time.monotonic()
        self.sessions.move_to_end(sid)
        return session

    # ---- POST ------------------------------------------------------------------------------------
    async def post(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        method, msg_id = message.get("method"), message.get("id")
        if method == "initialize":
            if "id" not in message:
                return json_answer(
                    p.error(None, p.INVALID_REQUEST, "Invalid Request: initialize needs an id"), 400
                )
            return self._initialize(request, message)
        session = self.session(request)
        if method is None or "id" not in message:  # a response or a notification
            return web.Response(status=202)
        try:
            result = await self._dispatch(request, session, method, message.get("params") or {})
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id, "result": result}
        except p.Refused:
            raise
        except p.RpcError as exc:
            answer = p.error(msg_id, exc.code, exc.message, exc.data)
        except KeyturnError as exc:  # e.g. the store or a worker list unavailable: the engine's own message
            answer = p.error(msg_id, p.INTERNAL_ERROR, exc.msg, {"error": exc.error, "status": exc.status})
        return reply(request, answer)

    def _initialize(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        server = self.server
        params = message.get("params") or {}
        version = p.negotiate(params.get("protocolVersion"))
        caps, info = params.get("capabilities"), params.get("clientInfo")
        self._prune()
        sid = secrets.token_urlsafe(32)
        self.sessions[sid] = p.Session(
            sid, version, caps if isinstance(caps, dict) else {}, info if isinstance(info, dict) else {}
        )
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": server.server_name, "version": server.version},
            "instructions": server.instructions,
        }
        response = reply(request, {"jsonrpc": "2.0", "id": message["id"], "result": result})
        response.headers["Mcp-Session-Id"] = sid
        return response

    def _prune(self) -> None:
        idle_before = time.monotonic() - self.server.session_idle
        while self.sessions:
            oldest = next(iter(self.sessions.values()))
            if len(self.sessions) < self.server.max_sessions and oldest.last_seen >= idle_before:
                break
            self.end(oldest)

    # ---- GET and DELETE --------------------------------------------------------------------------
    async def stream(self, request: web.Request) -> web.StreamResponse:
        if "text/event-stream" not in request.headers.get("Accept", ""):
            raise refused(406, "not_acceptable", "Not Acceptable: GET /mcp needs Accept: text/event-stream")
        session = self.session(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "Mcp-Session-Id": session.id,
            }
        )
        resumed = _resumed(session, request.headers.get("Last-Event-ID"))
        await response.prepare(request)
        session.streams += 1
        try:
            await response.write(b": stream open\n\n")
            if resumed is None:
                session.stream_count += 1
                stream = session.stream_count
            else:  # the same stream again: what it was sent after that event, from the bounded buffer
                stream, after = resumed
                for s, seq, missed in list(session.sent):
                    if s == stream and seq > after:
                        await response.write(p.sse_event(missed, f"{s}.{seq}"))
            while not session.closed:
                try:
                    event = await asyncio.wait_for(session.queue.get(), self.server.keepalive)
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                if event is None:  # the session ended
                    break
                session.event_seq += 1
                seq = session.event_seq
                try:
                    await response.write(p.sse_event(event, f"{stream}.{seq}"))
                except (ConnectionError, RuntimeError):
                    session.queue.put_nowait(event)  # not delivered: the next stream takes it (a new id)
                    raise
                session.sent.append((stream, seq, event))
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass
        finally:
            session.streams -= 1
        return response

    def delete(self, request: web.Request) -> web.StreamResponse:
        self.end(self.session(request))
        return web.Response(status=200)

    # ---- methods ---------------------------------------------------------------------------------
    async def _dispatch(
        self, request: web.Request, session: p.Session, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": await self.server.backend_tools(request)}
        if method == "tools/call":
            return await self._call(request, session, params)
        raise p.RpcError(p.METHOD_NOT_FOUND, f"Method not found: {method[:64]}")

    async def _call(self, request: web.Request, session: p.Session, params: dict[str, Any]) -> dict[str, Any]:
        name, arguments = params.get("name"), params.get("arguments") or {}
        if not isinstance(name, str) or not isinstance(arguments, dict):
            raise p.RpcError(
                p.INVALID_PARAMS, "tools/call needs params.name (string) and params.arguments (object)"
            )
        answer = await self.server.run_tool(request, name, arguments)
        if isinstance(answer, NeedsAuthorization):
            why = (
                session.auth_failures.pop(answer.provider_id, None)
                if answer.kind == "authorization"
                else None
            )
            if why is not None:  # the retry after a failed elicitation: say why, with the new link
                return answer.after_failure(why)
            return self._needs_authorization(session, answer)
        if isinstance(answer, UpstreamInput):  # not asked for without a relay; never sent to this era
            return p.text_result("the tool asks for input this client cannot give", is_error=True)
        return answer

    def _needs_authorization(self, session: p.Session, needed: NeedsAuthorization) -> dict[str, Any]:
        if not session.url_elicitation:
            return needed.as_result()
        elicitation_id = f"el_{secrets.token_urlsafe(16)}"
        task = asyncio.create_task(self._complete_later(session, needed, elicitation_id))
        session.tasks.add(task)
        task.add_done_callback(session.tasks.discard)
        elicitation = {
            "mode": "url",
            "elicitationId": elicitation_id,
            "url": needed.url,
            "message": needed.message,
        }
        raise p.RpcError(
            p.URL_ELICITATION_REQUIRED, "URL elicitation required", {"elicitations": [elicitation]}
        )

    async def _complete_later(
        self, session: p.Session, needed: NeedsAuthorization, elicitation_id: str
    ) -> None:
        """Wait for the flow; when it ends, send ``notifications/elicitation/complete``.

        Sent also when the flow failed or was not finished in time (the out-of-band interaction is over
        either way, so the client stops waiting); the next call needing that provider then says why.
        """
        timeout = self.server.elicitation_timeout
        deadline = time.monotonic() + timeout
        with contextlib.suppress(asyncio.CancelledError):
            while not session.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._ended(session, needed, elicitation_id, f"it was not completed within {timeout:g} s")
                    return
                try:
                    outcome = await self.server.backend.wait_flow(needed.flow_id, min(left, 50.0))
                except Exception as exc:  # a lost waiter must not take the server down
                    log.warning("mcp_elicitation_wait_failed", error=type(exc).__name__)
                    return
                if outcome == "completed":
                    session.notify(p.ELICITATION_COMPLETE, {"elicitationId": elicitation_id})
                    return
                if outcome == "failed":
                    self._ended(session, needed, elicitation_id, "it failed (denied, or its link expired)")
                    return

    @staticmethod
    def _ended(session: p.Session, needed: NeedsAuthorization, elicitation_id: str, why: str) -> None:
        if needed.kind == "authorization":
            session.auth_failures[needed.provider_id] = why
        log.info("mcp_elicitation_ended", provider=needed.provider_id, kind=needed.kind, completed=False)
        session.notify(p.ELICITATION_COMPLETE, {"elicitationId": elicitation_id})


def _resumed(session: p.Session, last_event_id: str | None) -> tuple[int, int] | None:
    """``(stream, seq)`` of a ``Last-Event-ID`` this session issued; None: a new stream."""
    stream, dot, seq = (last_event_id or "").strip().partition(".")
    if not dot or not stream.isdigit() or not seq.isdigit() or len(stream) > 9 or len(seq) > 15:
        return None
    if not 0 < int(stream) <= session.stream_count or int(seq) > session.event_seq:
        return None
    return int(stream), int(seq)
