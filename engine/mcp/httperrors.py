"""``/mcp``'s HTTP edge: every refusal and failure answered as a JSON-RPC error object with its own message.

The handlers are wrapped by :func:`answering_errors`, so an app's REST error middleware never sees their
errors and cannot replace the body with a generic one; :func:`error_answer` gives the engine's API key
middleware the same shape for ``/mcp``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from engine.errors import KeyturnError
from engine.mcp import protocol as p

log = structlog.get_logger("keyturn.mcp")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_answer(
    data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(text=p.dumps(data), status=status, content_type="application/json", headers=headers)


def refused(status: int, word: str, msg: str, headers: dict[str, str] | None = None) -> p.Refused:
    """An HTTP-level refusal (origin, API key, Accept): SERVER_ERROR with the word in ``data``."""
    return p.Refused(status, p.SERVER_ERROR, msg, data={"error": word}, headers=headers)


def error_answer(exc: KeyturnError, headers: dict[str, str] | None = None) -> web.Response:
    """An engine error at /mcp's HTTP edge (API key, rate limit): its status, a JSON-RPC error body."""
    h = dict(headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > 0:
        h["Retry-After"] = str(max(1, round(retry_after)))
    data = {"error": exc.error, "status": exc.status}
    return json_answer(p.error(None, p.SERVER_ERROR, exc.msg, data), exc.status, h)


def answering_errors(handler: Handler) -> Handler:
    """Every error of ``handler`` as a JSON-RPC error object with its own message (an app's REST error
    middleware never sees it, so it cannot replace the body with a generic one)."""

    async def answer(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except p.Refused as exc:
            return json_answer(p.error(exc.msg_id, exc.code, exc.message, exc.data), exc.status, exc.headers)
        except web.HTTPException as exc:  # raised by aiohttp itself, e.g. a body past client_max_size
            if exc.status < 400:
                raise
            return json_answer(p.error(None, p.SERVER_ERROR, exc.reason, {"status": exc.status}), exc.status)
        except KeyturnError as exc:
            return error_answer(exc)
        except Exception:
            log.exception("mcp_unhandled_error", method=request.method)
            msg = "Internal error; see the engine log with this request id"
            return json_answer(p.error(None, p.INTERNAL_ERROR, msg), 500)

    return answer


def reply(request: web.Request, answer: dict[str, Any]) -> web.Response:
    """A JSON-RPC answer as JSON, or as one SSE event when the client accepts only ``text/event-stream``."""
    accept = request.headers.get("Accept", "")
    if "text/event-stream" in accept and "application/json" not in accept and "*/*" not in accept:
        return web.Response(body=p.sse_event(answer), content_type="text/event-stream")
    return json_answer(answer)
