"""``/v1/tools*`` and ``/v1/formatted_tools*`` (Arcade's tools API)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.jsonio import json_response, optional_str, read_json_object, require_str
from engine.api.shapes import authorization_response, execution_response
from engine.errors import BadRequest
from engine.tools.formats import FORMATS, to_arcade
from engine.wiring.services import TOOLS
from engine.wiring.settings import SETTINGS

routes = web.RouteTableDef()


def _int(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isdigit():
        raise BadRequest(f"query parameter {name} must be a non-negative whole number")
    return min(int(raw), maximum)


def _page(items: list[Any], request: web.Request) -> dict[str, Any]:
    limit = _int(request, "limit", 25, 1000)
    offset = _int(request, "offset", 0, 10**9)
    return {
        "items": items[offset : offset + limit],
        "total_count": len(items),
        "offset": offset,
        "limit": limit,
        "page_count": 1,
    }


def _secrets(request: web.Request) -> set[str]:
    return set(request.app[SETTINGS].current.config.tools.secrets)


@routes.get("/v1/tools")
async def list_tools(request: web.Request) -> web.Response:
    include = request.query.getall("include_format", [])
    tools = await request.app[TOOLS].registry.all(request.query.get("toolkit"))
    present = _secrets(request)
    user_id = request.query.get("user_id")
    statuses = await request.app[TOOLS].auth_statuses(tools, user_id) if user_id else {}
    items = [
        to_arcade(
            t.definition, secrets_present=present, include_format=include, auth_status=statuses.get(t.name)
        )
        for t in tools
    ]
    return json_response(_page(items, request))


@routes.get("/v1/tools/{name}")
async def get_tool(request: web.Request) -> web.Response:
    tool = await request.app[TOOLS].registry.get(request.match_info["name"])
    include = request.query.getall("include_format", [])
    return json_response(
        to_arcade(tool.definition, secrets_present=_secrets(request), include_format=include)
    )


def _format(request: web.Request) -> Any:
    fmt = request.query.get("format", "openai")
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, got {fmt[:20]!r}")
    return FORMATS[fmt]


@routes.get("/v1/formatted_tools")
async def list_formatted(request: web.Request) -> web.Response:
    fmt = _format(request)
    tools = await request.app[TOOLS].registry.all(request.query.get("toolkit"))
    return json_response(_page([fmt(t.definition) for t in tools], request))


@routes.get("/v1/formatted_tools/{name}")
async def get_formatted(request: web.Request) -> web.Response:
    fmt = _format(request)
    tool = await request.app[TOOLS].registry.get(request.match_info["name"])
    return json_response(fmt(tool.definition))


@routes.post("/v1/tools/authorize")
async def authorize_tool(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    answer = await request.app[TOOLS].authorize(
        require_str(data, "tool_name"), require_str(data, "user_id"), optional_str(data, "next_uri")
    )
    return json_response(authorization_response(answer))


@routes.post("/v1/tools/execute")
async def execute_tool(request: web.Request) -> web.Response:
    data = await read_json_object(request)
    inputs = data.get("input") or {}
    if not isinstance(inputs, dict):
        raise BadRequest("body.input must be an object of the tool's parameters")
    if data.get("run_at"):
        raise BadRequest("scheduled execution (run_at) is not supported; call without run_at")
    answer = await request.app[TOOLS].execute(
        require_str(data, "tool_name"), inputs, optional_str(data, "user_id")
    )
    return json_response(execution_response(answer))
