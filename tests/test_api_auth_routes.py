"""engine.api.auth_routes: /v1/auth/* query and body checks on a real engine."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.keyturn_engine import KeyturnEngine
from tests.plugins.mini_provider import MiniProvider, acme_config


@pytest.fixture
async def engine(keyturn_engine: Any, mini_provider: MiniProvider) -> KeyturnEngine:
    return await keyturn_engine(acme_config(mini_provider))


async def _flow_id(engine: KeyturnEngine) -> str:
    status, body = await engine.api(
        "POST",
        "/v1/auth/authorize",
        json={"user_id": "u1", "auth_requirement": {"provider_id": "acme", "oauth2": {"scopes": ["a"]}}},
    )
    assert status == 200, body
    return str(body["id"])


@pytest.mark.parametrize(
    "wait", ["nan", "NaN", "inf", "-inf", "Infinity", "1e400", "-1", "-0.5", "abc", "1,5"]
)
async def test_bad_wait_is_400_naming_it(engine: KeyturnEngine, wait: str) -> None:
    """wait=nan, inf, negative or not a number answers 400 naming the wait parameter."""
    flow_id = await _flow_id(engine)
    status, body = await engine.api("GET", "/v1/auth/status", params={"id": flow_id, "wait": wait})
    assert status == 400, body
    assert body["error"] == "invalid_request" and "wait" in body["msg"]


async def test_good_wait_answers_pending(engine: KeyturnEngine) -> None:
    """A finite, non-negative wait answers the flow's status."""
    flow_id = await _flow_id(engine)
    for wait in ("0", "0.01", "", "1e-3"):
        status, body = await engine.api("GET", "/v1/auth/status", params={"id": flow_id, "wait": wait})
        assert (status, body["status"]) == (200, "pending")
