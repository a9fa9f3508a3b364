"""``/v1/auth/*`` (Arcade's auth API) and ``/v1/admin/user_connections``: JSON in, JSON out."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.jsonio import json_response, optional_str, read_json_object, require_str
from engine.api.shapes import authorization_response
from engine.errors import BadRequest, NotFound
from engine.flows.revoke import NOT_REVOKED_AT_PROVIDER
from engine.providers.resolve import requirement_scopes
from engine.wiring.services import FLOWS, REVOKER, STORE
from engine.wiring.settings import SETTINGS

routes = web.RouteTableDef()
MAX_WAIT = 59.0


def _user_id(data: dict[str, Any], key: str = "user_id") -> str:
    user_id = require_str(data, key)
    if len(user_id) > 256:
        raise BadRequest(f"body.{key} is longer than 256 characters")
    return user_id


@routes.post("/v1/auth/authorize")
async def authorize(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    requirement = data.get("auth_requirement")
    if not isinstance(requirement, dict):
        raise BadRequest("body.auth_requirement is required: {provider_id or id, oauth2: {scopes}}")
    provider_type = requirement.get("provider_type")
    if provider_type not in (None, "", "oauth2"):
        raise BadRequest(f"auth_requirement.provider_type {provider_type!r} is not supported (only oauth2)")
    settings = request.app[SETTINGS].current
    answer = await request.app[FLOWS].authorize(
        user_id=_user_id(data),
        requirement=requirement,
        scopes=requirement_scopes(requirement),
        next_uri=optional_str(data, "next_uri"),
        client_ip=settings.client_address.of(request),
    )
    return json_response(authorization_response(answer))


@routes.get("/v1/auth/status")
async def status(request: web.Request) -> web.Response:
    auth_id = request.query.get("id", "").strip()
    if not auth_id:
        raise BadRequest("query parameter id is required")
    raw_wait = request.query.get("wait", "0") or "0"
    try:
        wait = float(raw_wait)
    except ValueError:
        raise BadRequest(f"query parameter wait must be a number of seconds, got {raw_wait[:20]!r}") from None
    if wait < 0:
        raise BadRequest("query parameter wait must not be negative")
    answer = await request.app[FLOWS].status(auth_id, min(wait, MAX_WAIT))
    return json_response(authorization_response(answer))


async def _confirm_user(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    flow = await request.app[FLOWS].confirm_user(require_str(data, "flow_id"), _user_id(data))
    return json_response({"auth_id": flow.id, "next_uri": flow.next_uri})


routes.post("/v1/auth/confirm_user")(_confirm_user)
routes.post("/api/v1/oauth/confirm_user")(_confirm_user)


def _query(request: web.Request, *names: str) -> str | None:
    for name in names:
        value = request.query.get(name)
        if value:
            return value
    return None


def _int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        raise BadRequest(f"query parameter {name} must be a non-negative whole number")
    return min(int(raw), maximum)


def connection(grant: Any, providers: dict[str, Any]) -> dict[str, Any]:
    provider = providers.get(grant.provider_id)
    return {
        "id": grant.id,
        "connection_id": grant.id,
        "connection_status": grant.status,
        "provider_id": grant.provider_id,
        "provider_type": "oauth2",
        "provider_description": provider.description if provider else None,
        "provider_user_info": grant.user_info or {},
        "scopes": list(grant.scopes),
        "user_id": grant.user_id,
    }


@routes.get("/v1/admin/user_connections")
async def list_connections(request: web.Request) -> web.Response:
    user_id = _query(request, "user_id", "user[id]", "user.id")
    provider_id = _query(request, "provider_id", "provider[id]", "provider.id")
    limit = _int(request, "limit", 100, 1000)
    offset = _int(request, "offset", 0, 10**9)
    grants = await request.app[STORE].grants.list(user_id=user_id, provider_id=provider_id)
    providers = dict(request.app[SETTINGS].current.providers)
    items = [connection(g, providers) for g in grants[offset : offset + limit]]
    return json_response(
        {"items": items, "total_count": len(grants), "offset": offset, "limit": limit, "page_count": 1}
    )


@routes.delete("/v1/admin/user_connections/{id}")
async def delete_connection(request: web.Request) -> web.Response:
    grant_id = request.match_info["id"]
    result = await request.app[REVOKER].revoke(grant_id)
    if result is None:
        raise NotFound(f"no user connection {grant_id!r}")
    if result.outcome == NOT_REVOKED_AT_PROVIDER:  # deleted, but say that the provider still has it
        return json_response(result.answer())
    return web.Response(status=204)
