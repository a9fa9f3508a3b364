"""An upstream MCP server (official mcp SDK, streamable HTTP) that needs a bearer token checked at a provider.

    python tests/mcp_upstream/server.py PORT USERINFO_URL [sse]

Every request must carry ``Authorization: Bearer <token>``; the token is checked by calling the
provider's user info endpoint with it (401 otherwise). Tools: ``whoami`` (the provider's ``sub`` and
a short hash of the token, never the token), ``add`` and ``repeat`` (a large answer). Answers are JSON,
or SSE events with ``sse``. Prints ``{"port": PORT}`` once listening.
"""

import hashlib
import json
import sys
from contextvars import ContextVar

import httpx
import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse

USERINFO = sys.argv[2]
current_token: ContextVar[str] = ContextVar("current_token", default="")
app_server = MCPServer("upstream")


@app_server.tool()
async def whoami() -> dict[str, str]:
    """Who the token belongs to at the provider."""
    token = current_token.get()
    async with httpx.AsyncClient() as client:
        info = (await client.get(USERINFO, headers={"Authorization": f"Bearer {token}"})).json()
    return {"sub": str(info.get("sub", "")), "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:16]}


@app_server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@app_server.tool()
def repeat(text: str, times: int) -> str:
    """The text, ``times`` times over."""
    return text * times


starlette_app = app_server.streamable_http_app(json_response=sys.argv[3:] != ["sse"])


class CheckToken:
    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        request = Request(scope)
        auth = request.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        ok = False
        if token:
            async with httpx.AsyncClient() as client:
                ok = (
                    await client.get(USERINFO, headers={"Authorization": f"Bearer {token}"})
                ).status_code == 200
        if not ok:
            await JSONResponse({"error": "invalid_token"}, status_code=401)(scope, receive, send)  # type: ignore[arg-type]
            return
        reset = current_token.set(token)
        try:
            await self.app(scope, receive, send)  # type: ignore[operator]
        finally:
            current_token.reset(reset)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        print(json.dumps({"port": self.servers[0].sockets[0].getsockname()[1]}), flush=True)


if __name__ == "__main__":
    config = uvicorn.Config(
        CheckToken(starlette_app), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
    )
    _Server(config).run()
