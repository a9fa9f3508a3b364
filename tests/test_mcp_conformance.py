"""engine.mcp.server against the MCP conformance suite (@modelcontextprotocol/conformance, pinned).

The suite (0.1.16, its newest release) needs Node 22: the ``node`` package in the suite's own lock file
brings it (node_modules/.bin/node), so the system Node is not touched. Its server scenarios cover the
handshake era (2025-06-18, 2025-11-25) only; it has none for 2026-07-28 yet, which the official
Python client (tests/test_mcp_modern.py, tests/test_e2e_mcp.py) covers instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.mcp.backend import NeedsAuthorization
from engine.mcp.server import McpServer

SUITE = Path(__file__).parent / "mcp_conformance"
CLI = SUITE / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
NODE = SUITE / "node_modules" / ".bin" / "node"
# every server scenario of 0.1.16 that applies to a tools-only server (the others need the suite's own
# prompts, resources, or tools such as ``test_simple_text`` that Keyturn does not serve)
SCENARIOS = (
    "server-initialize",
    "ping",
    "tools-list",
    "dns-rebinding-protection",
    "server-sse-multiple-streams",
)


class OneToolBackend:
    """A single ``echo`` tool; nothing needs authorization."""

    async def list_tools(self, user_id: str | None) -> list[dict[str, Any]]:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
        return [{"name": "echo", "description": "Say it back", "inputSchema": schema}]

    async def call_tool(
        self, name: str, arguments: dict[str, Any], user_id: str | None
    ) -> dict[str, Any] | NeedsAuthorization:
        return {"content": [{"type": "text", "text": str(arguments.get("text"))}], "isError": False}

    async def wait_flow(self, flow_id: str, timeout: float) -> str:
        return "failed"


def _node() -> str:
    node = str(NODE) if NODE.exists() else None
    missing = None
    if node is None or shutil.which("node") is None:
        missing = f"node, or Node 22 from the suite's lock file, is missing: run `npm ci --prefix {SUITE}`"
    elif not CLI.is_file():
        missing = f"the conformance suite is not installed: run `npm ci --prefix {SUITE}`"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (required under CI=true)")
        pytest.skip(missing)
    assert node is not None
    return node


async def run_scenario(node: str, url: str, scenario: str, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        node,
        str(CLI),
        "server",
        "--url",
        url,
        "--scenario",
        scenario,
        cwd=cwd,  # the suite writes results/ into its working directory
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, re.sub(r"\x1b\[[0-9;]*m", "", out.decode(errors="replace"))


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_conformance_scenario(scenario: str, aiohttp_server: Any, tmp_path: Path) -> None:
    """The suite's server scenario passes against /mcp (no API key, default user, loopback)."""
    node = _node()
    app = web.Application()
    McpServer(OneToolBackend(), require_api_key=False, default_user="alice").setup(app)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    code, out = await run_scenario(node, str(server.make_url("/mcp")), scenario, tmp_path)
    assert code == 0 and "FAILURE" not in out and re.search(r"Passed: (\d+)/\1, 0 failed", out), out


@pytest.mark.parametrize("scenario", SCENARIOS)
async def test_conformance_scenario_engine(scenario: str, keyturn_engine: Any, tmp_path: Path) -> None:
    """The suite's server scenario passes against a whole engine's /mcp with mcp.auth none on loopback."""
    node = _node()
    engine = await keyturn_engine("mcp: {auth: none, default_user: alice}\n")
    code, out = await run_scenario(node, engine.url + "/mcp", scenario, tmp_path)
    assert code == 0 and "FAILURE" not in out and re.search(r"Passed: (\d+)/\1, 0 failed", out), out
