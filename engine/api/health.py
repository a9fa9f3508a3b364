"""Liveness and readiness: ``/ping``, ``/ready`` and Arcade's ``/v1/health``."""

from __future__ import annotations

import asyncio
import os

import structlog
from aiohttp import web

from engine import __version__
from engine.api.auth import bearer
from engine.api.guards import ApiKeys
from engine.api.jsonio import json_response
from engine.api.schemas import SCHEMAS
from engine.api.spec import Answer, Input, Routes
from engine.wiring.settings import READY_CHECKS, SETTINGS

log = structlog.get_logger("keyturn.health")
routes = web.RouteTableDef()
v1_routes = Routes(SCHEMAS)


@routes.get("/ping")
async def ping(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _run_checks(request: web.Request) -> dict[str, str]:
    failures: dict[str, str] = {}
    for name, check in request.app[READY_CHECKS]:
        try:
            await asyncio.wait_for(check(), timeout=2.0)
        except Exception as exc:
            # the reason is ours (e.g. "database unreachable"), never a secret
            failures[name] = str(exc)[:200] or type(exc).__name__
    return failures


async def _with_api_key(request: web.Request) -> bool:
    """Whether the request carries a valid API key (checked as the guard does for an address over its
    failure limit: no database query of its own for a made-up key, so /ready stays cheap)."""
    presented = bearer(request)
    if presented is None or SETTINGS not in request.app:
        return False
    try:
        return await ApiKeys(request.app).verify(presented, limited=True) is not None
    except Exception:  # the store is what the checks report on; no pid then
        return False


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    """``{"status": "ok", "version"}`` for anyone; the ``pid`` of the answering process (which of the
    ``api.processes``) only with a valid API key: nothing that identifies the host is unauthenticated."""
    failures = await _run_checks(request)
    if failures:
        log.warning("not_ready", checks=sorted(failures))
        return json_response({"status": "unavailable", "checks": failures}, status=503)
    body: dict[str, object] = {"status": "ok", "version": __version__}
    if await _with_api_key(request):
        body["pid"] = os.getpid()
    return json_response(body)


@v1_routes.route(
    "GET",
    "/v1/health",
    summary="Arcade's health check",
    answers={200: Answer("Healthy", "Health"), 503: Answer("Not ready", "Health")},
    public=True,
    tag="meta",
)
async def health(request: web.Request, inp: Input) -> web.Response:
    """Arcade's HealthSchema: ``{"healthy": bool}``."""
    failures = await _run_checks(request)
    return json_response({"healthy": not failures}, status=503 if failures else 200)
