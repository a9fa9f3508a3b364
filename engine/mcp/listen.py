"""``subscriptions/listen`` (MCP 2026-07-28): the response is an SSE stream of change notifications.

The first event acknowledges what will be delivered (only ``toolsListChanged``: Keyturn serves no
prompts or resources, and the text says the acknowledgement names only what the server supports;
the SDK's own handler echoes every requested kind). Then ``notifications/tools/list_changed``
whenever the catalog a worker or an upstream MCP server serves changes, each tagged with
``_meta["io.modelcontextprotocol/subscriptionId"]`` (the listen request's id); comment lines keep
the stream alive. When the server shuts down, the stream ends with the listen request's result.
Closing the stream is the client's way to stop listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from engine.mcp import envelope as env
from engine.mcp import protocol as p
from engine.mcp.host import McpHost

ACKNOWLEDGED = "notifications/subscriptions/acknowledged"
TOOLS_LIST_CHANGED = "notifications/tools/list_changed"


async def listen(
    server: McpHost,
    request: web.Request,
    msg_id: Any,
    params: dict[str, Any],
    finish: Callable[[dict[str, Any]], dict[str, Any]],
) -> web.StreamResponse:
    if "text/event-stream" not in request.headers.get("Accept", ""):
        raise p.Refused(
            406,
            p.SERVER_ERROR,
            "Not Acceptable: subscriptions/listen answers with text/event-stream",
            msg_id=msg_id,
            data={"error": "not_acceptable"},
        )
    if len(server.listeners) >= server.max_listeners:
        raise p.RpcError(p.INTERNAL_ERROR, "Subscription limit reached")
    wanted = params.get("notifications") or {}
    honored = {"toolsListChanged": True} if wanted.get("toolsListChanged") is True else {}
    meta = {env.META_SUBSCRIPTION_ID: msg_id}
    user = server.user(request)
    version = await server.catalog_version(user)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await response.prepare(request)
    stop = asyncio.Event()
    server.listeners.add(stop)
    try:
        await response.write(p.sse_event(_note(ACKNOWLEDGED, {"notifications": honored, "_meta": meta})))
        quiet_since = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), server.listen_poll)
            if stop.is_set():
                break
            current = await server.catalog_version(user)
            if current != version:
                version = current
                if honored:
                    await response.write(p.sse_event(_note(TOOLS_LIST_CHANGED, {"_meta": meta})))
                    quiet_since = time.monotonic()
            if time.monotonic() - quiet_since >= server.keepalive:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
        # ended by the server (shutdown): the listen request's result closes the stream
        await response.write(p.sse_event({"jsonrpc": "2.0", "id": msg_id, "result": finish({"_meta": meta})}))
    except (ConnectionError, RuntimeError, asyncio.CancelledError):
        pass  # the client closed the stream: it stopped listening
    finally:
        server.listeners.discard(stop)
    return response


def _note(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params}
