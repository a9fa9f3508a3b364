"""An upstream MCP server (official mcp SDK, streamable HTTP) that needs a bearer token checked at a provider.

    python tests/mcp_upstream/server.py PORT USERINFO_URL [sse] [modern-only | legacy-only]

Every request must carry ``Authorization: Bearer <token>``; the token is checked by calling the
provider's user info endpoint with it (401 otherwise). Tools: ``whoami`` (the provider's ``sub`` and
a short hash of the token, never the token), ``add``, ``repeat`` (a large answer), ``protocol`` (the
``MCP-Protocol-Version`` the call came with) and ``confirm`` (2026-07-28 only: asks the client for
input with ``input_required`` and its own sealed ``requestState``, then answers with what it got).
Answers are JSON, or SSE events with ``sse``. ``modern-only`` refuses the handshake era as a server
speaking only 2026-07-28 does; ``legacy-only`` refuses 2026-07-28 requests as a server of the
handshake era does (no session id: 400 without a modern error). Prints ``{"port": PORT}`` once
listening.
"""

import hashlib
import json
import sys
from contextvars import ContextVar

import httpx
import mcp_types as types
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse

USERINFO = sys.argv[2]
current_token: ContextVar[str] = ContextVar("current_token", default="")
current_version: ContextVar[str] = ContextVar("current_version", default="")
ERA = next((a for a in sys.argv[3:] if a.endswith("-only")), "both")
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


@app_server.tool()
def protocol() -> str:
    """The MCP-Protocol-Version header this call came with."""
    return current_version.get()


@app_server.tool()
async def confirm(ctx: Context) -> str | types.InputRequiredResult:
    """Ask the client to confirm (a form), then say what it answered and that the state came back."""
    answer = (ctx.input_responses or {}).get("ok")
    if ctx.request_state is None or answer is None:
        schema = {"type": "object", "properties": {"sure": {"type": "boolean"}}, "required": ["sure"]}
        request = types.ElicitRequest(
            params=types.ElicitRequestFormParams(message="Sure?", requested_schema=schema)
        )
        return types.InputRequiredResult(input_requests={"ok": request}, request_state="upstream-state-1")
    content = getattr(answer, "content", None) or {}
    return f"confirmed sure={content.get('sure')} state={ctx.request_state}"


starlette_app = app_server.streamable_http_app(json_response="sse" not in sys.argv[3:])


class CheckToken:
    def __init__(self, app: object) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        request = Request(scope)
        version = request.headers.get("mcp-protocol-version", "")
        if ERA == "modern-only" and version != "2026-07-28":
            error = {
                "code": -32022,
                "message": "Unsupported protocol version",
                "data": {"supported": ["2026-07-28"]},
            }
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": error}, status_code=400)(
                scope, receive, send
            )  # type: ignore[arg-type]
            return
        if ERA == "legacy-only" and version == "2026-07-28":
            error = {"code": -32600, "message": "Bad Request: Missing session ID"}
            await JSONResponse({"jsonrpc": "2.0", "id": "server-error", "error": error}, status_code=400)(
                scope, receive, send
            )  # type: ignore[arg-type]
            return
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
        reset_version = current_version.set(version)
        try:
            await self.app(scope, receive, send)  # type: ignore[operator]
        finally:
            current_token.reset(reset)
            current_version.reset(reset_version)


class _Server(uvicorn.Server):
    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        print(json.dumps({"port": self.servers[0].sockets[0].getsockname()[1]}), flush=True)


if __name__ == "__main__":
    config = uvicorn.Config(
        CheckToken(starlette_app), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning"
    )
    _Server(config).run()
