"""A worker built with arcade-mcp-server (MCPApp's tools, served with ARCADE_WORKER_SECRET: /worker/*).

    ARCADE_WORKER_SECRET=... USERINFO_URL=... python tests/mcp_worker/server.py PORT

Tools (toolkit ``Keyturnmcp``): ``WhoAmI`` needs the ``acme`` OAuth provider (scope ``email``) and
returns what the provider's user info endpoint says of the user's token, plus a short hash of the
token (never the token); ``Echo(text)`` needs nothing. Prints ``{"port": PORT}`` once listening.
"""

import hashlib
import json
import os
import sys
from typing import Annotated

import httpx
import uvicorn
from arcade_core.auth import OAuth2
from arcade_mcp_server import Context, MCPApp
from arcade_mcp_server.worker import create_arcade_mcp

app = MCPApp(name="keyturnmcp", version="1.0.0")


@app.tool(requires_auth=OAuth2(id="acme", scopes=["email"]))
async def who_am_i(context: Context) -> Annotated[dict[str, str], "the user at the provider"]:
    """Who the user is at the provider, asked with the user's own token."""
    token = context.get_auth_token_or_empty()
    async with httpx.AsyncClient() as client:
        resp = await client.get(os.environ["USERINFO_URL"], headers={"Authorization": f"Bearer {token}"})
    info = resp.json()
    return {"sub": str(info.get("sub", "")), "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:16]}


@app.tool
def echo(text: Annotated[str, "what to say back"]) -> str:
    """Say the text back."""
    return text


class _Server(uvicorn.Server):
    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        print(json.dumps({"port": self.servers[0].sockets[0].getsockname()[1]}), flush=True)


if __name__ == "__main__":
    fastapi_app = create_arcade_mcp(catalog=app._catalog)
    config = uvicorn.Config(fastapi_app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
    _Server(config).run()
