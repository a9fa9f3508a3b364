"""The request edge: request id, errors as JSON, security headers and timing, in one middleware.

:func:`edge_middleware` is the engine's only aiohttp middleware. Per request it gives an id (a
caller's X-Request-Id is kept when it is short and plain), runs the route's guards (API key,
``audit.required``, MCP bearer tokens: chosen per route at startup by ``engine.api.guards``), turns
every failure into ``{code, error, msg}`` (never a stack trace or a secret), adds the security headers
to the handler's answer and reports (route template, method, status, seconds) to the metrics (in a
later turn of the event loop: the metrics' work is not on the request's path).
The single-purpose middlewares below do one of these each, for apps that want only that.
"""

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
# a route's guards: (request, handler) -> the answer (the handler's, or a refusal)
Guard = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
Observe = Callable[[str, str, int, float], Any]  # (route template, method, status, seconds)

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
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
)
_bind = structlog.contextvars.bind_contextvars
_unbind = structlog.contextvars.unbind_contextvars


def request_id(request: web.Request) -> str:
    value: str = request.get(REQUEST_ID, "")
    return value


def new_request_id(request: web.Request) -> str:
    """The caller's X-Request-Id when it is short and plain (letters, digits, dashes), else a fresh one."""
    incoming = request.headers.get("X-Request-Id", "")
    if 0 < len(incoming) <= 64 and incoming.replace("-", "").isalnum():
        return incoming
    return secrets.token_hex(8)


def failure_answer(request: web.Request, exc: Exception) -> web.StreamResponse:
    """The JSON answer for a failure; re-raises an HTTP exception that is no error (a redirect)."""
    if isinstance(exc, KeyturnError):
        return error_response(exc)
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return error_response(PayloadTooLarge("request body is larger than the configured limit"))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400 or exc.empty_body:
            raise exc
        if exc.status == 404:
            return error_response(NotFound(f"no route for {request.method} {request.path}"))
        word = _HTTP_WORDS.get(exc.status, "http_error")
        err = KeyturnError(exc.reason or word, error=word)
        err.status = exc.status
        resp = error_response(err)
        if exc.status == 405 and "Allow" in exc.headers:
            resp.headers["Allow"] = exc.headers["Allow"]
        return resp
    log.exception("unhandled_error", method=request.method, route=_route(request))
    err = KeyturnError("internal error; see the engine log with this request id", error="internal_error")
    return error_response(err)


def add_security_headers(response: web.StreamResponse) -> None:
    headers = response.headers
    for name, value in SECURITY_HEADERS:
        if name not in headers:
            headers[name] = value


def edge_middleware(guard_of: Callable[[web.Request], Guard | None], observe: Observe | None = None) -> Any:
    """The engine's one middleware (see the module docstring); ``guard_of(request)`` names the route's
    guards (None: none), ``observe`` gets each request's timing (None: metrics off)."""

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter() if observe is not None else 0.0
        rid = new_request_id(request)
        request[REQUEST_ID] = rid
        _bind(request_id=rid)
        status = 500
        try:
            try:
                guard = guard_of(request)
                response = await (handler(request) if guard is None else guard(request, handler))
            except Exception as exc:  # an answer from it, or re-raised (a redirect)
                response = failure_answer(request, exc)
            else:
                add_security_headers(response)  # on the handler's (or a guard's) answer, not on errors
            response.headers["X-Request-Id"] = rid
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            _unbind("request_id")
            if observe is not None:  # in a later loop turn, normally after the answer was written
                asyncio.get_running_loop().call_soon(
                    observe, _route(request), request.method, status, time.perf_counter() - start
                )

    return edge


# ---- the same behaviours one at a time (test apps, embedders) ------------------------------------
@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give every request an id (a caller's X-Request-Id is kept when it is short and plain)."""
    rid = new_request_id(request)
    request[REQUEST_ID] = rid
    _bind(request_id=rid)
    try:
        response = await handler(request)
    finally:
        _unbind("request_id")
    response.headers["X-Request-Id"] = rid
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into ``{code, error, msg}``; never a stack trace or a secret."""
    try:
        return await handler(request)
    except Exception as exc:
        return failure_answer(request, exc)


def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def security_headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    add_security_headers(response)
    return response


def timing_middleware(observe: Observe) -> Any:
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
