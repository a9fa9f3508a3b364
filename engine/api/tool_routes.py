"""``/v1/tools*`` and ``/v1/formatted_tools*`` (Arcade's tools API), declared in ``engine.api.spec``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.api.jsonio import json_response
from engine.api.schemas import SCHEMAS, ident
from engine.api.shapes import authorization_response, execution_response
from engine.api.spec import Answer, Input, Param, Routes
from engine.identity import IDENTITY
from engine.tools.formats import FORMATS, to_arcade
from engine.wiring.services import TOOLS
from engine.wiring.settings import SETTINGS

routes = Routes(SCHEMAS)

PAGE = (
    Param("limit", {"type": "integer", "minimum": 0}, description="Page size (default 25, at most 1000)."),
    Param("offset", {"type": "integer", "minimum": 0}, description="Page offset."),
)
TOOLKIT = Param("toolkit", {"type": "string", "maxLength": 256}, description="Only this toolkit's tools.")
INCLUDE = Param(
    "include_format",
    {"type": "array", "items": {"type": "string", "maxLength": 64}, "maxItems": 10},
    description="Add formatted_schema in this format (openai or anthropic; others are ignored).",
)
FORMAT = Param(
    "format",
    {"type": "string", "enum": list(FORMATS), "default": "openai"},
    description="The format to write tools in.",
)
NAME = (Param("name", ident("Toolkit.Tool (or Toolkit_Tool).")),)
USER = Param(
    "user_id", ident("The user: tools an access hook (tools.hooks) hides from this user are left out.")
)


def _page(items: list[Any], query: dict[str, Any]) -> dict[str, Any]:
    limit = min(query.get("limit", 25), 1000)
    offset = query.get("offset", 0)
    return {
        "items": items[offset : offset + limit],
        "total_count": len(items),
        "offset": offset,
        "limit": limit,
        "page_count": 1,
    }


def _secrets(request: web.Request) -> set[str]:
    return set(request.app[SETTINGS].current.config.tools.secrets)


@routes.route(
    "GET",
    "/v1/tools",
    summary="The tools of every worker (with a user's authorization status when user_id is given)",
    query=(
        TOOLKIT,
        INCLUDE,
        Param("user_id", ident("Fill each tool's authorization status for this user.")),
        *PAGE,
    ),
    answers={200: Answer("One page of tools", "ToolPage")},
    tag="tools",
)
async def list_tools(request: web.Request, inp: Input) -> web.Response:
    include = inp.query.get("include_format", [])
    user_id = inp.query.get("user_id")
    tools = await request.app[TOOLS].tools(inp.query.get("toolkit"), request.get(IDENTITY), user_id)
    present = _secrets(request)
    statuses = await request.app[TOOLS].auth_statuses(tools, user_id) if user_id else {}
    items = [
        to_arcade(
            t.definition, secrets_present=present, include_format=include, auth_status=statuses.get(t.name)
        )
        for t in tools
    ]
    return json_response(_page(items, inp.query))


@routes.route(
    "GET",
    "/v1/tools/{name}",
    summary="One tool's definition",
    path_params=NAME,
    query=(INCLUDE, USER),
    answers={200: Answer("The tool", "ToolDefinition")},
    tag="tools",
)
async def get_tool(request: web.Request, inp: Input) -> web.Response:
    tool = await request.app[TOOLS].tool(inp.path["name"], request.get(IDENTITY), inp.query.get("user_id"))
    include = inp.query.get("include_format", [])
    return json_response(
        to_arcade(tool.definition, secrets_present=_secrets(request), include_format=include)
    )


@routes.route(
    "GET",
    "/v1/formatted_tools",
    summary="Every tool written as a model provider's function schema",
    query=(FORMAT, TOOLKIT, USER, *PAGE),
    answers={200: Answer("One page of formatted tools", "FormattedToolPage")},
    tag="tools",
)
async def list_formatted(request: web.Request, inp: Input) -> web.Response:
    fmt = FORMATS[inp.query["format"]]
    tools = await request.app[TOOLS].tools(
        inp.query.get("toolkit"), request.get(IDENTITY), inp.query.get("user_id")
    )
    return json_response(_page([fmt(t.definition) for t in tools], inp.query))


@routes.route(
    "GET",
    "/v1/formatted_tools/{name}",
    summary="One tool written as a model provider's function schema",
    path_params=NAME,
    query=(FORMAT, USER),
    answers={200: Answer("The formatted tool", "FormattedTool")},
    tag="tools",
)
async def get_formatted(request: web.Request, inp: Input) -> web.Response:
    fmt = FORMATS[inp.query["format"]]
    tool = await request.app[TOOLS].tool(inp.path["name"], request.get(IDENTITY), inp.query.get("user_id"))
    return json_response(fmt(tool.definition))


@routes.route(
    "POST",
    "/v1/tools/authorize",
    summary="Authorize a user for a tool's requirement",
    body="ToolAuthorizeRequest",
    answers={200: Answer("The authorization", "AuthorizationResponse")},
    tag="tools",
)
async def authorize_tool(request: web.Request, inp: Input) -> web.Response:
    data = inp.body
    answer = await request.app[TOOLS].authorize(
        data["tool_name"],
        data["user_id"],
        data.get("next_uri"),
        caller=request.get(IDENTITY),
        account=data.get("account"),
    )
    return json_response(authorization_response(answer))


@routes.route(
    "POST",
    "/v1/tools/execute",
    summary="Run a tool as a user (success false with output.authorization when not yet authorized)",
    body="ToolExecuteRequest",
    answers={200: Answer("The execution", "ExecuteToolResponse")},
    tag="tools",
)
async def execute_tool(request: web.Request, inp: Input) -> web.Response:
    data = inp.body
    answer = await request.app[TOOLS].execute(
        data["tool_name"],
        data.get("input") or {},
        data.get("user_id"),
        caller=request.get(IDENTITY),
        account=data.get("account"),
    )
    return json_response(execution_response(answer))
