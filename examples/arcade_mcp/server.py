"""An MCP server built with arcade-mcp-server that authorizes its users through Keyturn.

    ARCADE_API_URL=http://127.0.0.1:9099 ARCADE_API_KEY=<a Keyturn API key> \\
    ARCADE_USER_ID=alice@example.com python examples/arcade_mcp/server.py

arcade-mcp-server asks Arcade's API (here: Keyturn) for the user's authorization before it runs a
tool that needs one, and takes the token from the answer's ``context.token``: Keyturn must allow
that with ``security.token_exposure: api``. ``acme`` is the ``auth.providers[].id`` in engine.yaml.
Runs over stdio (what Claude Desktop and Cursor start).
"""

import hashlib
import os
from typing import Annotated

import httpx
from arcade_core.auth import OAuth2
from arcade_mcp_server import Context, MCPApp

app = MCPApp(name="keyturn_example", version="1.0.0")


@app.tool(requires_auth=OAuth2(id="acme", scopes=["email"]))
async def whoami(context: Context) -> Annotated[dict[str, str], "the user at the provider"]:
    """Who the user is at the provider, asked with the user's own token."""
    token = context.get_auth_token_or_empty()
    userinfo = os.environ.get("ACME_USERINFO_URL")
    sub = ""
    if userinfo:
        async with httpx.AsyncClient() as client:
            sub = str(
                (await client.get(userinfo, headers={"Authorization": f"Bearer {token}"}))
                .json()
                .get("sub", "")
            )
    return {"sub": sub, "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:16]}


if __name__ == "__main__":
    app.run(transport="stdio")
