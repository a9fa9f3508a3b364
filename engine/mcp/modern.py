"""``/mcp`` for MCP 2026-07-28: one self-contained POST per request, no session, MRTR for sign-in.

Every request carries its version, client capabilities and client info in ``params._meta``
(engine.mcp.envelope checks them and the mirrored headers). Served: ``server/discover``,
``tools/list`` (with ``ttlMs``/``cacheScope``), ``tools/call`` and ``subscriptions/listen``
(engine.mcp.listen). Every result carries ``resultType`` and the server's identity in
``_meta["io.modelcontextprotocol/serverInfo"]``.

A call whose user must authorize first answers ``resultType: "input_required"`` with one URL-mode
``elicitation/create`` input request (the engine's flow link, which still verifies the user) and a
``requestState`` sealed by engine.mcp.request_state. The retry (same call plus ``inputResponses``
and ``requestState``) waits a bounded time for the flow ("It may need to block until the request
is fulfilled", client/elicitation), then runs the tool, asks again with a state-only answer while
the flow is still pending, or, when it failed, answers an ``isError`` result saying so with a new
flow's link (the call after that asks anew). A client that declared no URL elicitation
gets the link in an ``isError`` result (also as ``structuredContent.authorization_url``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.errors import KeyturnError
from engine.mcp import envelope as env
from engine.mcp import protocol as p
from engine.mcp.backend import NeedsAuthorization, Relay, UpstreamInput
from engine.mcp.host import McpHost
from engine.mcp.httperrors import reply
from engine.mcp.listen import listen
from engine.mcp.request_state import Binding, RequestStateError, arguments_digest

CACHEABLE = {"server/discover", "tools/list"}
INPUT_KEY = "authorization"
DISCOVER_TTL_MS = 5 * 60 * 1000


class ModernEra:
    def __init__(self, server: McpHost) -> None:
        self.server = server

    async def post(self, request: web.Request, message: dict[str, Any]) -> web.StreamResponse:
        msg_id = message.get("id")
        if "method" not in message:
            return _error(None, p.INVALID_REQUEST, "Invalid Request: clients must not POST responses")
        if "id" not in message:  # a notification: accepted and dropped (no client notifications in this era)
            version = request.headers.get(env.VERSION_HEADER)
            if version is not None and version not in env.SUPPORTED_VERSIONS:
                exc = env.unsupported(version)
                return _error(None, exc.code, exc.message, exc.data)
            return web.Response(status=202)
        try:
            envelope = env.read_envelope(request.headers, message)
            method, params = message["method"], message.get("params") or {}
            if method == "subscriptions/listen":
                env.validate_params(method, envelope.version, params)
                return await listen(self.server, request, msg_id, params, self.finish)
            result = await self._dispatch(request, envelope, method, params)
        except p.Refused:
            raise
        except p.RpcError as exc:
            return _error(msg_id, exc.code, exc.message, exc.data)
        except KeyturnError as exc:  # e.g. the store or a worker list unavailable: the engine's own message
            data = {"error": exc.error, "status": exc.status}
            return _error(msg_id, p.INTERNAL_ERROR, exc.msg, data)
        return reply(request, {"jsonrpc": "2.0", "id": msg_id, "result": self.finish(result)})

    def finish(self, result: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``resultType`` (default ``complete``) and our ``serverInfo`` on a result.

        Reserved ``io.modelcontextprotocol/*`` keys from elsewhere (an upstream's answer) are dropped:
        Keyturn, not the upstream, is the client's peer. The listen stream's subscription id stays.
        """
        meta = {
            k: v
            for k, v in (result.get("_meta") or {}).items()
            if not k.startswith("io.modelcontextprotocol/") or k == env.META_SUBSCRIPTION_ID
        }
        meta[env.META_SERVER_INFO] = {"name": self.server.server_name, "version": self.server.version}
        return {**result, "resultType": result.get("resultType") or "complete", "_meta": meta}

    async def _dispatch(
        self, request: web.Request, envelope: env.Envelope, method: str, params: dict[str, Any]
    ) -> dict[str, Any]:
        if method == "server/discover":
            return self.discover()
        if method not in ("tools/list", "tools/call"):
            raise p.RpcError(p.METHOD_NOT_FOUND, f"Method not found: {method[:64]}")
        env.validate_params(method, envelope.version, params)
        if method == "tools/list":
            tools = await self.server.backend_tools(request)
            # private: the list depends on the caller and user; 0: list_changed says when to ask again
            return {"tools": tools, "ttlMs": 0, "cacheScope": "private"}
        return await self._call(request, envelope, params)

    def discover(self) -> dict[str, Any]:
        return {
            "supportedVersions": list(env.SUPPORTED_VERSIONS),
            "capabilities": {"tools": {"listChanged": True}},
            "instructions": self.server.instructions,
            "ttlMs": DISCOVER_TTL_MS,
            "cacheScope": "public",
        }

    async def _call(
        self, request: web.Request, envelope: env.Envelope, params: dict[str, Any]
    ) -> dict[str, Any]:
        name, arguments = params["name"], params.get("arguments") or {}
        user = self.server.user(request)
        binding = Binding(user or "", self.server.caller(request), name, arguments_digest(arguments))
        relay = Relay(envelope.capabilities)
        failed = False  # the retry follows a flow that failed: the answer says so rather than asking anew
        state = params.get("requestState")
        if state is not None:
            try:
                saved = self.server.sealer.open(state, binding)
            except RequestStateError as exc:
                raise p.RpcError(p.INVALID_PARAMS, f"Invalid params: {exc}") from None
            if "up" in saved:  # the upstream's own state, handed back untouched with the client's answers
                responses = params.get("inputResponses")
                up = saved["up"] if isinstance(saved["up"], str) else None
                relay = Relay(envelope.capabilities, responses if isinstance(responses, dict) else None, up)
            else:
                step, answer_now = await self._after_input(saved, params.get("inputResponses"))
                if step == "answer":
                    return answer_now
                if step == "pending":
                    return self._ask(binding, saved, again=True)
                failed = step == "failed"
        answer = await self.server.run_tool(request, name, arguments, relay)
        if isinstance(answer, UpstreamInput):
            result: dict[str, Any] = {
                "resultType": "input_required",
                "requestState": self.server.sealer.seal(binding, {"up": answer.request_state}),
            }
            if answer.input_requests:
                result["inputRequests"] = answer.input_requests
            return result
        if not isinstance(answer, NeedsAuthorization):
            return answer
        if failed and answer.kind == "authorization":
            return answer.after_failure("it failed (denied, or its link expired)")
        if not envelope.url_elicitation:
            return answer.as_result()
        saved = {
            "flow": answer.flow_id,
            "url": answer.url,
            "provider": answer.provider_id,
            "msg": answer.message,
        }
        return self._ask(binding, saved)

    async def _after_input(self, saved: dict[str, Any], responses: Any) -> tuple[str, dict[str, Any]]:
        """On a retry: ``("run", {})`` the tool now, ``("failed", {})`` (run it; the flow failed),
        ``("answer", result)``, or ``("pending", {})``."""
        answer = responses.get(INPUT_KEY) if isinstance(responses, dict) else None
        action = answer.get("action") if isinstance(answer, dict) else None
        if action in ("decline", "cancel"):
            needed = NeedsAuthorization(
                url=str(saved.get("url")),
                flow_id=str(saved.get("flow")),
                provider_id=str(saved.get("provider")),
                message="Authorization was not given.",
            )
            return "answer", needed.as_result()
        flow_id = saved.get("flow")
        if not isinstance(flow_id, str) or not flow_id:
            return "run", {}
        outcome = await self.server.wait_flow(flow_id, self.server.input_wait)
        return {"pending": "pending", "failed": "failed"}.get(outcome, "run"), {}

    def _ask(self, binding: Binding, saved: dict[str, Any], *, again: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = {
            "resultType": "input_required",
            "requestState": self.server.sealer.seal(binding, saved),
        }
        if not again:  # while the flow is pending, a state-only answer: the client retries at once
            result["inputRequests"] = {
                INPUT_KEY: {
                    "method": "elicitation/create",
                    "params": {"mode": "url", "message": str(saved["msg"]), "url": str(saved["url"])},
                }
            }
        return result


def _error(msg_id: Any, code: int, message: str, data: Any = None) -> web.Response:
    body = p.dumps(p.error(msg_id, code, message, data))
    return web.Response(text=body, status=env.HTTP_STATUS.get(code, 200), content_type="application/json")
