"""Arcade's JavaScript client (@arcadeai/arcadejs, from tests/arcadejs' lock file) against Keyturn."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import USER, MiniProvider, acme_config

HERE = Path(__file__).parent / "arcadejs"


@pytest.fixture
def node() -> str:
    path = shutil.which("node")
    if path is None or not (HERE / "node_modules" / "@arcadeai" / "arcadejs").is_dir():
        reason = "node or tests/arcadejs/node_modules missing (run ./scripts/test, which runs npm ci)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


async def js(node: str, engine: Any, op: dict[str, Any], *, api_key: str = API_KEY) -> Any:
    env = {**os.environ, "ARCADE_BASE_URL": engine.url, "ARCADE_API_KEY": api_key}
    proc = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "client.mjs"),
        json.dumps(op),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def test_start_wait_status(keyturn_engine: Any, mini_provider: MiniProvider, node: str) -> None:
    """auth.start, then the user follows url, then auth.waitForCompletion and auth.status report completed."""
    engine = await keyturn_engine(acme_config(mini_provider))
    auth = await js(node, engine, {"op": "start", "user_id": USER, "provider": "acme", "scopes": ["read"]})
    assert auth["status"] == "pending" and auth["url"].startswith(engine.url)
    waiting = asyncio.create_task(js(node, engine, {"op": "wait", "id": auth["id"]}))
    async with engine.browser.get(auth["url"]) as resp:  # start -> provider -> callback, redirects followed
        assert resp.status == 200
    done = await waiting
    assert done["status"] == "completed" and done["scopes"] == ["read"]
    status = await js(node, engine, {"op": "status", "id": auth["id"], "wait": 1})
    assert status["status"] == "completed"
    assert (await js(node, engine, {"op": "health"}))["healthy"] is True


async def test_confirm_user_and_errors(keyturn_engine: Any, mini_provider: MiniProvider, node: str) -> None:
    """auth.confirmUser completes a verified flow; a wrong API key is a 401 error in the client."""
    sec = (
        "api_keys: ['test-api-key-0123456789abcdef'], "
        "user_verifier: {mode: custom, url: 'https://app.example/verify'}"
    )
    engine = await keyturn_engine(acme_config(mini_provider, security=sec))
    auth = await js(node, engine, {"op": "start", "user_id": USER, "provider": "acme", "scopes": ["read"]})
    async with engine.browser.get(auth["url"], allow_redirects=False) as resp:
        provider_url = resp.headers["Location"]
    async with engine.browser.get(provider_url, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    async with engine.browser.get(callback, allow_redirects=False) as resp:
        assert resp.status == 303
    confirmed = await js(node, engine, {"op": "confirm", "flow_id": auth["id"], "user_id": USER})
    assert confirmed["auth_id"] == auth["id"]
    assert await js(node, engine, {"op": "health"}, api_key="wrong") == {"healthy": True}  # public route
    bad = await js(node, engine, {"op": "start", "user_id": USER, "provider": "acme"}, api_key="wrong")
    assert bad["error"]["status"] == 401
