"""JSON in and out at the HTTP edge: parse request bodies with clear errors, answer errors as data."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from engine.errors import BadRequest, KeyturnError, PayloadTooLarge
from engine.jsontext import JsonTextError, parse

JSON_HEADERS = {"Cache-Control": "no-store"}


# datetimes and dataclasses as the standard library's ``default=str`` writes them
_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON (orjson; the standard library for what orjson refuses: huge ints, odd keys)."""
    try:
        return orjson.dumps(data, default=str, option=_ORJSON)
    except TypeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def dumps(data: Any) -> str:
    return dumps_bytes(data).decode()


def json_response(data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    h = dict(JSON_HEADERS)
    if headers:
        h.update(headers)
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json", headers=h)


def error_response(exc: KeyturnError, *, headers: Mapping[str, str] | None = None) -> web.Response:
    h = dict(headers or {})
    retry_after = getattr(exc, "retry_after", None)
    if isinstance(retry_after, int | float) and retry_after > 0:
        h["Retry-After"] = str(max(1, round(retry_after)))
    return json_response(exc.to_dict(), status=exc.status, headers=h)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400/413 that says what was wrong."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(
            f"request body is larger than the limit of {request.app._client_max_size} bytes"
        ) from None
    if not raw.strip():
        raise BadRequest("request body is empty: expected a JSON object")
    try:
        data = parse(raw)
    except JsonTextError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc.reason}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def require_str(data: Mapping[str, Any], key: str, *, where: str = "body") -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        if value is None:
            raise BadRequest(f"{where}.{key} is required")
        raise BadRequest(f"{where}.{key} must be a non-empty string")
    return value


def optional_str(data: Mapping[str, Any], key: str, *, where: str = "body") -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{where}.{key} must be a string")
    return value
