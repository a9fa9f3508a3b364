"""Routes declared once: method, path, inputs (JSON Schema) and answers.

Each handler is registered through a :class:`Routes` table with what it takes — a request body schema,
query and path parameters — and what it answers. The wrapper validates every input with those same
schemas (jsonschema, Draft 2020-12) before the handler runs, so a handler sees only data that matches
its declaration, and ``engine.api.openapi`` writes ``/v1/openapi.json`` from the same tables.

A failed check is a 400 ``{code, error, msg}`` naming the field (``body.auth_requirement.oauth2.scopes[0]``,
``query parameter wait``); the message never quotes the value.

Every ``/v1/X`` route is also served at ``/v1/orgs/{org}/projects/{project}/X``: Arcade's Python clients
rewrite paths that way when the machine has an ``arcade login`` context (arcade-core
``network/org_transport.py``). Same handler, same API key check; the org and project are ignored.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from engine.api.jsonio import read_json_object
from engine.errors import BadRequest

ORG_SCOPED_PREFIX = "/v1/orgs/{org}/projects/{project}/"
_ORG_SCOPED = re.compile(r"^/v1/orgs/[^/]+/projects/[^/]+/")


def unscoped(path: str) -> str:
    """``/v1/orgs/{org}/projects/{project}/X`` as ``/v1/X``; any other path unchanged."""
    return _ORG_SCOPED.sub("/v1/", path, count=1)


@dataclasses.dataclass(frozen=True)
class Param:
    """A query or path parameter: its name and the JSON Schema of its value."""

    name: str
    schema: Mapping[str, Any]
    required: bool = False
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Answer:
    """One documented response: a component schema name (JSON) or a media type without schema."""

    description: str
    schema: str | None = None
    media_type: str = "application/json"
    headers: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Input:
    """A request's checked inputs."""

    body: dict[str, Any]
    query: dict[str, Any]
    path: dict[str, str]


SpecHandler = Callable[[web.Request, Input], Awaitable[web.StreamResponse]]


@dataclasses.dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: SpecHandler
    summary: str
    body: str | None  # the component schema name of the JSON body
    query: tuple[Param, ...]
    path_params: tuple[Param, ...]
    answers: Mapping[int, Answer]
    public: bool  # no API key (browser endpoints, health)
    tag: str
    scoped: bool  # also served under ORG_SCOPED_PREFIX


class Routes:
    """A table of declared routes (like ``web.RouteTableDef``), with the schemas they name."""

    def __init__(self, schemas: Mapping[str, Mapping[str, Any]]) -> None:
        self.schemas = schemas
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        answers: Mapping[int, Answer],
        body: str | None = None,
        query: Sequence[Param] = (),
        path_params: Sequence[Param] = (),
        public: bool = False,
        tag: str = "",
        scoped: bool = True,
    ) -> Callable[[SpecHandler], SpecHandler]:
        if body is not None and body not in self.schemas:
            raise KeyError(f"unknown body schema {body}")

        def register(handler: SpecHandler) -> SpecHandler:
            self.routes.append(
                Route(
                    method,
                    path,
                    handler,
                    summary,
                    body,
                    tuple(query),
                    tuple(path_params),
                    answers,
                    public,
                    tag,
                    scoped and path.startswith("/v1/"),
                )
            )
            return handler

        return register

    def add_to(self, app: web.Application) -> None:
        for route in self.routes:
            handler = _checked(route, self.schemas)
            app.router.add_route(route.method, route.path, handler)
            if route.scoped:
                app.router.add_route(route.method, ORG_SCOPED_PREFIX + route.path[len("/v1/") :], handler)


def _checked(route: Route, schemas: Mapping[str, Mapping[str, Any]]) -> Callable[..., Any]:
    body_check = _validator(schemas[route.body], schemas) if route.body is not None else None
    query_checks = [(p, ValueCheck(_validator(p.schema, schemas))) for p in route.query]
    path_checks = [(p, ValueCheck(_validator(p.schema, schemas))) for p in route.path_params]

    async def handler(request: web.Request) -> web.StreamResponse:
        path = {p.name: request.match_info[p.name] for p in route.path_params}
        for param, check in path_checks:
            check(path[param.name], f"path parameter {param.name}")
        query = {p.name: _query_value(request, p, v) for p, v in query_checks}
        body: dict[str, Any] = {}
        if body_check is not None:
            body = await read_json_object(request)
            _check(body_check, body, "body")
        return await route.handler(
            request, Input(body, {k: v for k, v in query.items() if v is not None}, path)
        )

    handler.__name__ = route.handler.__name__
    return handler


def _validator(schema: Mapping[str, Any], schemas: Mapping[str, Mapping[str, Any]]) -> Draft202012Validator:
    root = {**schema, "components": {"schemas": dict(schemas)}}  # "#/components/schemas/X" resolves
    return Draft202012Validator(root)


def _check(validator: Draft202012Validator, value: Any, where: str) -> None:
    error = best_match(validator.iter_errors(value))
    if error is not None:
        raise BadRequest(describe(error, where))


class ValueCheck:
    """A parameter's validator that remembers the last few thousand scalar values it accepted (the
    check is a pure function of the value: an id polled again is not validated again)."""

    SIZE = 4096

    def __init__(self, validator: Draft202012Validator) -> None:
        self.validator = validator
        self.accepted: set[tuple[type, Any]] = set()  # (type, value): True and 1 are not one value

    def __call__(self, value: Any, where: str) -> None:
        key = (type(value), value) if isinstance(value, str | int | float | bool) else None
        if key is not None and key in self.accepted:
            return
        _check(self.validator, value, where)
        if key is not None:
            if len(self.accepted) >= self.SIZE:
                self.accepted.clear()
            self.accepted.add(key)


def _query_value(request: web.Request, param: Param, validator: ValueCheck) -> Any:
    where = f"query parameter {param.name}"
    kind = param.schema.get("type")
    if kind == "array":
        raw_items = [v for raw in request.query.getall(param.name, []) for v in raw.split(",") if v]
        items_kind = param.schema.get("items", {}).get("type", "string")
        value: Any = [_scalar(v, items_kind, where) for v in raw_items] or None
    else:
        raw = request.query.get(param.name, "")
        value = _scalar(raw, kind, where) if raw != "" else None
    if value is None:
        if param.required:
            raise BadRequest(f"{where} is required")
        return param.schema.get("default")
    validator(value, where)
    return value


_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")


def _scalar(raw: str, kind: Any, where: str) -> Any:
    """A query string value as the declared type (ASCII digits only; no nan, inf or ``1_0``)."""
    if kind == "integer":
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise BadRequest(f"{where} must be a non-negative whole number")
        return int(raw)
    if kind == "number":
        number = float(raw) if _NUMBER.fullmatch(raw) else None
        if number is None or number in (float("inf"), float("-inf")):
            raise BadRequest(f"{where} must be a finite number")
        return number
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise BadRequest(f"{where} must be true or false")
        return raw == "true"
    return raw


def _type_word(kind: Any) -> str:
    words = {"object": "an object", "array": "a list", "integer": "a whole number", "null": "null"}
    kinds = kind if isinstance(kind, list) else [kind]
    return " or ".join(words.get(k, f"a {k}") for k in kinds)


def where_of(error: ValidationError, where: str) -> str:
    out = where
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def describe(error: ValidationError, where: str) -> str:
    """A message naming the field and what it must be, never quoting its value."""
    field = where_of(error, where)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    rule = str(error.validator)
    expected: Any = error.validator_value
    if isinstance(schema.get("x-error"), str):
        return f"{field} {schema['x-error']}"
    if rule == "required":
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        missing = next((k for k in expected if k not in instance), "")
        return f"{field}.{missing} is required"
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: f"must be {_type_word(expected)}",
        "minLength": lambda: (
            "must not be empty" if expected == 1 else f"must be at least {expected} characters"
        ),
        "maxLength": lambda: f"is longer than {expected} characters",
        "minItems": lambda: f"must have at least {expected} items",
        "maxItems": lambda: f"has more than {expected} items",
        "maxProperties": lambda: f"has more than {expected} fields",
        "enum": lambda: "must be one of " + ", ".join(str(v) for v in expected),
        "const": lambda: f"must be {expected}",
        "minimum": lambda: f"must be at least {expected}",
        "maximum": lambda: f"must be at most {expected}",
        "pattern": lambda: "has characters that are not allowed",
        "not": lambda: "is not allowed",
    }
    make = messages.get(rule)
    return f"{field} {make() if make else 'is not valid'}"
