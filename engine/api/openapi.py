"""``/v1/openapi.json``: the OpenAPI 3.1 document written from the declared routes (``engine.api.spec``).

Nothing here is kept by hand: paths, parameters, bodies and answers come from the same declarations the
handlers are checked with. ``/mcp`` (JSON-RPC) and the org-scoped aliases of each path are left out;
the browser endpoints (``/v1/oauth/...``) are listed with their HTML and redirect answers.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from engine import __version__
from engine.api.jsonio import json_response
from engine.api.schemas import SCHEMAS
from engine.api.spec import Answer, Input, Param, Route, Routes

API_TABLES: web.AppKey[list[Routes]] = web.AppKey("keyturn_api_tables", list)
routes = Routes(SCHEMAS)


@routes.route(
    "GET",
    "/v1/openapi.json",
    summary="This API's OpenAPI 3.1 document",
    answers={200: Answer("The document", "OpenApiDocument")},
    public=True,
    tag="meta",
)
async def openapi(request: web.Request, inp: Input) -> web.Response:
    return json_response(document(request.app[API_TABLES]))


# answered by the edge for any route: checked input, API key, rate limit, storage
COMMON = {
    400: "Invalid input: the message names the field.",
    401: "Missing or invalid API key.",
    404: "No such route or object.",
    413: "Request body larger than api.max_body_bytes.",
    429: "Rate limited (see Retry-After).",
    503: "Storage or the engine is unavailable (see Retry-After).",
}
ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}


def _parameter(where: str, param: Param) -> dict[str, Any]:
    schema = {k: v for k, v in param.schema.items() if k not in ("x-error", "description")}
    out: dict[str, Any] = {"name": param.name, "in": where, "required": param.required or where == "path"}
    if param.description or param.schema.get("description"):
        out["description"] = param.description or param.schema["description"]
    if schema.get("type") == "array":
        out |= {"style": "form", "explode": True}
    return out | {"schema": schema}


def _answer(answer: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": answer.description}
    if answer.schema is not None:
        out["content"] = {answer.media_type: {"schema": {"$ref": f"#/components/schemas/{answer.schema}"}}}
    elif answer.media_type != "":
        out["content"] = {answer.media_type: {"schema": {"type": "string"}}}
    if answer.headers:
        out["headers"] = {h: {"schema": {"type": "string"}, "required": True} for h in answer.headers}
    return out


def _operation(route: Route) -> dict[str, Any]:
    responses = {str(status): _answer(a) for status, a in sorted(route.answers.items())}
    for status, description in COMMON.items():
        if status == 401 and route.public:
            continue
        if status == 413 and route.body is None:
            continue
        responses.setdefault(str(status), {"description": description, "content": ERROR_JSON})
    responses.setdefault("default", {"description": "Any other error.", "content": ERROR_JSON})
    if route.public and any(a.media_type == "text/html" for a in route.answers.values()):
        # a page route answers its errors as pages too; a failure before the handler is JSON
        for key in ("400", "404", "default"):
            responses[key] = {
                "description": responses[key]["description"],
                "content": {"text/html": {"schema": {"type": "string"}}, **ERROR_JSON},
            }
    op: dict[str, Any] = {
        "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{route.method} {route.path}").strip("_").lower(),
        "summary": route.summary,
        "responses": responses,
    }
    if route.tag:
        op["tags"] = [route.tag]
    params = [_parameter("path", p) for p in route.path_params] + [
        _parameter("query", p) for p in route.query
    ]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{route.body}"}}},
        }
    if route.public:
        op["security"] = []
    return op


def document(tables: list[Routes], server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``tables``."""
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    for table in tables:
        schemas.update(table.schemas)
        for route in table.routes:
            paths.setdefault(route.path, {})[route.method.lower()] = _operation(route)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Keyturn Engine API",
            "version": __version__,
            "description": "Arcade Engine API compatible. Every /v1/X path is also served at "
            "/v1/orgs/{org}/projects/{project}/X (what Arcade's clients send after `arcade login`).",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {k: _public(v) for k, v in sorted(schemas.items())},
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _public(schema: Any) -> Any:
    """``schema`` without the engine's own ``x-error`` wording."""
    if isinstance(schema, dict):
        return {k: _public(v) for k, v in schema.items() if k != "x-error"}
    if isinstance(schema, list):
        return [_public(v) for v in schema]
    return schema
