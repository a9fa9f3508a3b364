"""engine.api.jsonio: request bodies on every POST route of a real engine, bad JSON answered 400 naming it."""

from __future__ import annotations

import datetime
import enum
import json
import re
from typing import Any

import pytest

from engine.api.jsonio import dumps, dumps_bytes
from tests.plugins.keyturn_engine import KeyturnEngine

DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
BAD_BODIES = {
    "nested_100k_array": DEEP_ARRAY,
    "nested_100k_object": DEEP_OBJECT,
    "deep_in_field": b'{"user_id":"u","input":' + b"[" * 5000 + b"]" * 5000 + b"}",
    "int_5000_digits": b'{"user_id":' + b"7" * 5000 + b"}",
    "negative_int_5000_digits": b'{"tool_name":"x","input":{"n":-' + b"9" * 5000 + b"}}",
    "float_5000_digits": b'{"flow_id":1.' + b"3" * 5000 + b"e999}",
    "nan_literal": b'{"user_id":NaN}',
    "lone_surrogate": b'{"user_id":"\\ud800"}',
    "invalid_utf8": b'{"user_id":"\xff"}',
    "not_json": b"{nope",
    "empty": b"",
    "array": b"[]",
}


def post_routes(engine: KeyturnEngine) -> list[str]:
    """Every JSON POST route of the app (org and project filled in), taken from its router; the
    browser's form posts (/logout, /connections/...) take forms, not JSON."""
    paths = set()
    for route in engine.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter", "")
        if route.method == "POST" and path.startswith(("/v1/", "/api/", "/mcp")):
            for name in ("org", "project"):
                path = path.replace("{" + name + "}", "o1")
            paths.add(re.sub(r"\{[a-z_]+\}", "x1", path))  # other path parameters (an approval id)
    return sorted(paths)


@pytest.fixture
async def engine(keyturn_engine: Any) -> KeyturnEngine:
    return await keyturn_engine()


async def test_post_routes_are_found(engine: KeyturnEngine) -> None:
    """The route list the other tests walk holds the known POST routes."""
    routes = post_routes(engine)
    assert {"/v1/auth/authorize", "/v1/auth/confirm_user", "/v1/tools/authorize", "/v1/tools/execute"} <= set(
        routes
    )
    assert "/mcp" in routes


@pytest.mark.parametrize("kind", sorted(BAD_BODIES))
async def test_bad_json_is_400_on_every_post_route(engine: KeyturnEngine, kind: str) -> None:
    """Deep nesting, huge numbers, NaN, bad UTF-8, not JSON: 400 on every POST route, never a 500."""
    for path in post_routes(engine):
        if path == "/mcp" or path.startswith("/mcp/"):
            continue  # JSON-RPC (the endpoint and its gateways): tests/test_mcp_server.py
        status, body = await engine.api(
            "POST", path, data=BAD_BODIES[kind], headers={"Content-Type": "application/json"}
        )
        assert status == 400, (path, status, body)
        assert body["code"] == 400 and body["error"] == "invalid_request", (path, body)
        assert body["msg"].startswith("request body"), (path, body)


async def test_messages_name_the_problem(engine: KeyturnEngine) -> None:
    """The message says what was wrong (depth, size, where), and never quotes the body."""
    _, deep = await engine.api("POST", "/v1/auth/authorize", data=DEEP_ARRAY)
    assert "nested deeper than 1024 levels" in deep["msg"]
    _, big = await engine.api("POST", "/v1/tools/execute", data=BAD_BODIES["int_5000_digits"])
    assert "number is too large" in big["msg"] and "777" not in big["msg"]
    _, where = await engine.api("POST", "/v1/tools/execute", data=b'{"a":\n tru}')
    assert "line 2" in where["msg"]


def test_dumps_writes_what_the_standard_library_wrote() -> None:
    """Answers are orjson's bytes, identical to the former ``json.dumps(default=str)`` text, huge ints too."""

    class Kind(enum.StrEnum):
        A = "a"

    value = {
        "at": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "day": datetime.date(2026, 1, 2),
        "list": [1, 2.5, None, True, (1, 2)],
        "text": 'é\u2028"<>',
        "kind": Kind.A,
        "keys": {1: 2},
        "huge": 10**30,
    }
    before = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    assert dumps(value) == before
    value.pop("huge")
    assert (
        dumps_bytes(value)
        == json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()
    )
