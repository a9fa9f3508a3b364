"""The official TypeScript MCP client (@modelcontextprotocol/sdk, tests/mcp_ts's lock file) against /mcp."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import MiniProvider, acme_config

HERE = Path(__file__).parent / "mcp_ts"


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        reason = f"node or the TypeScript SDK is missing: run `npm ci --prefix {HERE}`"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert node is not None
    return node


async def test_typescript_client_lists_and_calls(
    keyturn_engine: Any, mini_provider: MiniProvider, arcade_mcp_worker: Any
) -> None:
    """The TS client lists the worker's tools, calls one, and gets the sign-in link for one needing it."""
    node = _node()
    worker = await arcade_mcp_worker(mini_provider.url("/userinfo"))
    engine = await keyturn_engine(acme_config(mini_provider, extra=worker.yaml()))
    args = [engine.url + "/mcp", API_KEY, "ts@example.test", "Keyturnmcp_Echo", "Keyturnmcp_WhoAmI"]
    proc = await asyncio.create_subprocess_exec(
        node,
        str(HERE / "client.mjs"),
        *args,
        cwd=HERE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()[-2000:]
    seen = json.loads(out.decode().strip().splitlines()[-1])
    assert seen["protocolVersion"] == "2025-11-25"
    assert {"Keyturnmcp_Echo", "Keyturnmcp_WhoAmI"} <= set(seen["tools"])
    assert seen["echo"]["content"][0]["text"] == "from typescript" and not seen["echo"].get("isError")
    auth = seen["auth"]
    assert auth["isError"] and auth["structuredContent"]["authorization_url"].startswith(
        engine.url + "/v1/oauth/start/"
    )
    assert auth["structuredContent"]["authorization_url"] in auth["content"][0]["text"]
