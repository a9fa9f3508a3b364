"""``/v1/auth/*`` (Arcade's auth API) and ``/v1/admin/user_connections``: JSON in, JSON out.

Inputs are declared (``engine.api.spec``) and checked before a handler runs.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.jsonio import json_response
from engine.api.schemas import SCHEMAS, ident
from engine.api.shapes import authorization_response
from engine.api.spec import Answer, Input, Param, Routes
from engine.errors import NotFound
from engine.flows.revoke import NOT_REVOKED_AT_PROVIDER
from engine.providers.resolve import requirement_scopes
from engine.store.grants import default_ids
from engine.wiring.services import FLOWS, REVOKER, STORE, TOOLS
from engine.wiring.settings import SETTINGS

routes = Routes(SCHEMAS)
MAX_WAIT = 59.0

AUTHORIZATION = {
    200: Answer("The authorization: completed at once, or pending with its url", "AuthorizationResponse")
}


@routes.route(
    "POST",
    "/v1/auth/authorize",
    summary="Start (or find) a user's authorization with a provider",
    body="AuthorizeRequest",
    answers=AUTHORIZATION,
    tag="auth",
)
async def authorize(request: web.Request, inp: Input) -> web.Response:
    data = inp.body
    requirement = data["auth_requirement"]
    settings = request.app[SETTINGS].current
    answer = await request.app[FLOWS].authorize(
        user_id=data["user_id"],
        requirement=requirement,
        scopes=requirement_scopes(requirement),
        next_uri=data.get("next_uri"),
        client_ip=settings.client_address.of(request),
        account=data.get("account"),
    )
    return json_response(authorization_response(answer))


@routes.route(
    "GET",
    "/v1/auth/status",
    summary="An authorization's status, optionally waiting until it is finished",
    query=(
        Param(
            "id",
            ident("The authorization id (fl_..., gr_..., or ap_... of a held tool call)."),
            required=True,
        ),
        Param(
            "wait",
            {"type": "number", "minimum": 0, "x-error": "must be a finite, non-negative number of seconds"},
            description=f"Seconds to wait for completion (at most {MAX_WAIT:.0f} are waited).",
        ),
    ),
    answers=AUTHORIZATION,
    tag="auth",
)
async def status(request: web.Request, inp: Input) -> web.Response:
    wait = min(float(inp.query.get("wait", 0)), MAX_WAIT)
    auth_id = inp.query["id"]
    approvals = request.app[TOOLS].approvals
    if auth_id.startswith("ap_") and approvals is not None:  # a held tool call (tools.approval)
        answer = await approvals.status(auth_id, wait)
    else:
        answer = await request.app[FLOWS].status(auth_id, wait)
    return json_response(authorization_response(answer))


async def _confirm_user(request: web.Request, inp: Input) -> web.Response:
    data = inp.body
    flow = await request.app[FLOWS].confirm_user(data["flow_id"], data["user_id"])
    return json_response({"auth_id": flow.id, "next_uri": flow.next_uri})


for _path in ("/v1/auth/confirm_user", "/api/v1/oauth/confirm_user"):  # the second is seed 002's path
    routes.route(
        "POST",
        _path,
        summary="Confirm the user a verifying flow was started for (security.user_verifier: custom)",
        body="ConfirmUserRequest",
        answers={200: Answer("The flow is completed", "ConfirmUserResponse")},
        tag="auth",
    )(_confirm_user)


def connection(grant: Any, providers: dict[str, Any], *, is_default: bool = False) -> dict[str, Any]:
    provider = providers.get(grant.provider_id)
    return {
        "id": grant.id,
        "connection_id": grant.id,
        "connection_status": grant.status,
        "provider_id": grant.provider_id,
        "provider_type": provider.type if provider else "oauth2",
        "provider_description": provider.description if provider else None,
        "provider_user_info": grant.user_info or {},
        "scopes": list(grant.scopes),
        "user_id": grant.user_id,
        "account": grant.account,
        "is_default": is_default,
    }


def _filter(name: str, what: str) -> Param:
    return Param(name, {"type": "string", "maxLength": 256}, description=f"Only this {what}.")


LIMIT = {"type": "integer", "minimum": 0}


@routes.route(
    "GET",
    "/v1/admin/user_connections",
    summary="Users' connections (grants)",
    query=(
        _filter("user_id", "user"),
        _filter("user[id]", "user (arcadepy's spelling)"),
        _filter("user.id", "user"),
        _filter("provider_id", "provider"),
        _filter("provider[id]", "provider (arcadepy's spelling)"),
        _filter("provider.id", "provider"),
        Param("limit", LIMIT, description="Page size (default 100, at most 1000)."),
        Param("offset", LIMIT, description="Page offset."),
    ),
    answers={200: Answer("One page of connections", "UserConnectionPage")},
    tag="admin",
)
async def list_connections(request: web.Request, inp: Input) -> web.Response:
    q = inp.query
    user_id = q.get("user_id") or q.get("user[id]") or q.get("user.id")
    provider_id = q.get("provider_id") or q.get("provider[id]") or q.get("provider.id")
    limit = min(q.get("limit", 100), 1000)
    offset = q.get("offset", 0)
    grants = await request.app[STORE].grants.list(user_id=user_id, provider_id=provider_id)
    providers = dict(request.app[SETTINGS].current.providers)
    defaults = default_ids(grants)
    items = [connection(g, providers, is_default=g.id in defaults) for g in grants[offset : offset + limit]]
    return json_response(
        {"items": items, "total_count": len(grants), "offset": offset, "limit": limit, "page_count": 1}
    )


@routes.route(
    "DELETE",
    "/v1/admin/user_connections/{id}",
    summary="Revoke a connection at its provider (RFC 7009) and delete it",
    path_params=(Param("id", ident("The connection id.")),),
    answers={
        204: Answer("Revoked at the provider and deleted", media_type=""),
        200: Answer("Deleted, but not revoked at the provider (the message says why)", "RevocationResult"),
    },
    tag="admin",
)
async def delete_connection(request: web.Request, inp: Input) -> web.Response:
    grant_id = inp.path["id"]
    result = await request.app[REVOKER].revoke(grant_id)
    if result is None:
        raise NotFound(f"no user connection {grant_id!r}")
    if result.outcome == NOT_REVOKED_AT_PROVIDER:  # deleted, but say that the provider still has it
        return json_response(result.answer())
    return web.Response(status=204)
