"""Request middlewares: request id, errors as JSON, security headers, API key check."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from engine.api.jsonio import error_response
from engine.errors import KeyturnError, NotFound, PayloadTooLarge

log = structlog.get_logger("keyturn.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REQUEST_ID: web.RequestKey[str] = web.RequestKey("keyturn_request_id", str)
_HTTP_WORDS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def request_id(request: web.Request) -> str:
    value: str = request.get(REQUEST_ID, "")
    return value


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (a caller's X-Request-Id is kept when it is short and plain)."""
    incoming = request.headers.get("X-Request-Id", "")
    rid = (
        incoming if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum() else secrets.token_hex(8)
    )
    request[REQUEST_ID] = rid
    structlog.contextvars.bind_contextvars(request_id=rid)
    try:
        response = await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into ``{code, error, msg}``; never a stack trace or a secret."""
    try:
        return await handler(request)
    except KeyturnError as exc:
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge("request body is larger than the configured limit"))
    except web.HTTPException as exc:
        if exc.status < 400 or exc.empty_body:
            raise
        if exc.status == 404:
            return error_response(NotFound(f"no route for {request.method} {request.path}"))
        word = _HTTP_WORDS.get(exc.status, "http_error")
        err = KeyturnError(exc.reason or word, error=word)
        err.status = exc.status
        resp = error_response(err)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    except Exception:
        log.exception("unhandled_error", method=request.method, route=_route(request))
        err = KeyturnError("internal error; see the engine log with this request id", error="internal_error")
        return error_response(err)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def timing_middleware(observe: Callable[[str, str, int, float], Any]) -> Any:
    """Report (route template, method, status, seconds) of every request to ``observe``.

    ``observe`` runs in a later turn of the event loop (``call_soon``), once the request's task yields
    (normally after its answer was written): the metrics' work is not on the request's path.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            loop.call_soon(observe, _route(request), request.method, status, time.perf_counter() - start)

    return middleware
