"""API key middleware: which routes need a key, 401 JSON, audit hook, rate limit of failures."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from engine.api.auth import api_key_middleware, needs_api_key
from engine.api.middleware import error_middleware
from engine.identity import IDENTITY
from engine.ratelimit import SlidingWindowLimiter

GOOD = "kt_test_" + "x" * 40


class Verifier:
    def __init__(self) -> None:
        self.limited: list[bool] = []

    async def verify(self, presented: str, *, limited: bool = False) -> Any | None:
        self.limited.append(limited)
        return {"name": "test"} if presented == GOOD else None


@pytest.mark.parametrize(
    ("path", "needed"),
    [
        ("/v1/auth/authorize", True),
        ("/v1/tools/execute", True),
        ("/v1/admin/user_connections", True),
        ("/api/v1/oauth/confirm_user", True),
        ("/v1/oauth/start/fl_123", False),
        ("/v1/oauth/callback", False),
        ("/v1/oauth/github/callback", False),
        ("/v1/oauth/github/other", True),
        ("/v1/health", False),
        ("/v1/openapi.json", False),
        ("/v1/orgs/o1/projects/p1/tools/execute", True),
        ("/v1/orgs/o1/projects/p1/health", False),
        ("/v1/orgs/o1/projects/p1/oauth/github/callback", False),
        ("/ping", False),
        ("/metrics", False),
    ],
)
def test_routes_needing_a_key(path: str, needed: bool) -> None:
    """Every /v1 route (org-scoped too) but the browser endpoints, health and openapi.json needs a key."""
    assert needs_api_key(path) is needed


def _app(denied: list[str], limit: int = 3, verifier: Verifier | None = None) -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"who": request[IDENTITY]["name"]})

    async def on_denied(request: web.Request, reason: str) -> None:
        denied.append(reason)

    limiter = SlidingWindowLimiter(limit, 60)
    keys = verifier or Verifier()
    auth = api_key_middleware(lambda r: keys, limiter, lambda r: "ip", on_denied)
    app = web.Application(middlewares=[error_middleware, auth])
    app.router.add_get("/v1/thing", ok)
    return app


async def test_valid_key_passes(aiohttp_client: Any) -> None:
    """A valid bearer key reaches the handler with its identity."""
    client = await aiohttp_client(_app([]))
    resp = await client.get("/v1/thing", headers={"Authorization": f"Bearer {GOOD}"})
    assert resp.status == 200
    assert await resp.json() == {"who": "test"}


async def test_bare_key_accepted_other_schemes_not(aiohttp_client: Any) -> None:
    """A bare key (what arcadepy sends) is accepted; another scheme such as Basic is not."""
    client = await aiohttp_client(_app([]))
    assert (await client.get("/v1/thing", headers={"Authorization": GOOD})).status == 200
    assert (await client.get("/v1/thing", headers={"Authorization": f"Basic {GOOD}"})).status == 401


async def test_missing_and_wrong_keys_are_401_json_and_audited(aiohttp_client: Any) -> None:
    """No key and a wrong key answer 401 JSON with a stable error word; the key is never echoed."""
    denied: list[str] = []
    client = await aiohttp_client(_app(denied, limit=10))
    r1 = await client.get("/v1/thing")
    assert r1.status == 401
    body1 = await r1.json()
    assert body1["error"] == "unauthorized"
    assert body1["code"] == 401
    r2 = await client.get("/v1/thing", headers={"Authorization": "Bearer wrong-key-value-123"})
    assert r2.status == 401
    assert "wrong-key-value-123" not in await r2.text()
    assert denied == ["missing", "invalid"]


async def test_repeated_failures_limit_only_bad_keys(aiohttp_client: Any) -> None:
    """After the limit of failures from one address a valid key still passes; a bad or no key gets 429."""
    denied: list[str] = []
    keys = Verifier()
    client = await aiohttp_client(_app(denied, limit=3, verifier=keys))
    for _ in range(3):
        assert (await client.get("/v1/thing", headers={"Authorization": "Bearer nope"})).status == 401
    assert keys.limited == [False, False, False]
    resp = await client.get("/v1/thing", headers={"Authorization": f"Bearer {GOOD}"})
    assert resp.status == 200 and keys.limited[-1] is True  # checked the cheap way, and let through
    resp = await client.get("/v1/thing", headers={"Authorization": "Bearer nope"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    assert (await client.get("/v1/thing")).status == 429
    assert denied[-2:] == ["rate_limited", "rate_limited"]


def test_declared_public_routes_are_the_ones_without_a_key() -> None:
    """Every declared /v1 route needs the key exactly when spec.py does not mark it public."""
    from engine.api import auth_routes, health, oauth_routes, openapi, tool_routes

    tables = (auth_routes.routes, health.v1_routes, oauth_routes.routes, openapi.routes, tool_routes.routes)
    declared = [route for table in tables for route in table.routes if route.path.startswith("/v1/")]
    assert declared
    for route in declared:
        path = route.path.replace("{", "x").replace("}", "")  # a concrete path for each template
        assert needs_api_key(path) is not route.public, f"{route.method} {route.path}"
