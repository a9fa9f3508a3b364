"""arcade-mcp-server pointed at Keyturn (ARCADE_API_URL): its users authorize through Keyturn's flows."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.plugins.keyturn_engine import API_KEY
from tests.plugins.mini_provider import MiniProvider, acme_config

SERVER = Path(__file__).resolve().parent.parent / "examples" / "arcade_mcp" / "server.py"


async def test_arcade_mcp_server_authorizes_through_keyturn(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """The tool answers with Keyturn's flow link; after sign-in the next call runs with the user's token."""
    sec = "api_keys: ['test-api-key-0123456789abcdef'], token_exposure: api"
    engine = await keyturn_engine(acme_config(mini_provider, security=sec))
    env = {
        **os.environ,
        "ARCADE_API_URL": engine.url,
        "ARCADE_API_KEY": API_KEY,
        "ARCADE_USER_ID": "alice@example.test",
        "ACME_USERINFO_URL": mini_provider.url("/userinfo"),
    }
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER)], env=env)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        first = await session.call_tool("KeyturnExample_Whoami", {})
        text = first.content[0].text
        assert engine.url + "/v1/oauth/start/" in text
        link = text[text.index(engine.url + "/v1/oauth/start/") :].split()[0].rstrip(".,)\"'\\")
        async with engine.browser.get(link) as resp:
            assert resp.status == 200
        second = await session.call_tool("KeyturnExample_Whoami", {})
        assert not second.is_error, second
        value = json.loads(second.content[0].text)
        grant = await engine.store.grants.find("alice@example.test", "acme")
        assert value["sub"] == "u-123"
        assert value["token_sha256"] == hashlib.sha256(grant.access_token.encode()).hexdigest()[:16]
