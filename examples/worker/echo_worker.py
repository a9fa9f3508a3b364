"""An example worker built with arcade-tdk and served by arcade-serve: the reference worker in tests.

    ARCADE_WORKER_SECRET=... python examples/worker/echo_worker.py [PORT]

Tools (toolkit ``Echo``):
- ``Echo.Say(text)``: no authorization; returns the text.
- ``Echo.WhoAmI()``: needs the ``acme`` OAuth provider (scope ``email``); calls the provider's user info
  endpoint (``ACME_USERINFO_URL``) with the user's token and returns what it says, plus a short hash
  of the token so a test can tell which token the engine sent (never the token itself).
- ``Echo.Ping()``: needs the ``acme`` provider but calls nothing: the benchmark's no-op tool.
- ``Echo.Secret()``: needs the ``GREETING`` secret from the engine's ``tools.secrets``.
- ``Echo.KeyInfo()``: needs the ``acme-keys`` provider (an engine ``type: api_key`` entry; arcade-tdk's
  ``OAuth2(id=...)`` names it, the tool reads the key as the token, unchanged); returns a short hash of
  the key and the non-secret fields entered with it, never the key.

Prints ``{"port": PORT}`` on stdout once it listens.
"""

import hashlib
import json
import os
import sys
from typing import Annotated

import httpx
import uvicorn
from arcade_core.auth import OAuth2
from arcade_core.errors import UpstreamError
from arcade_serve.fastapi import FastAPIWorker
from arcade_tdk import ToolCatalog, ToolContext, tool
from fastapi import FastAPI


@tool
def say(text: Annotated[str, "What to say back"]) -> str:
    """Say the text back."""
    return text


@tool(requires_auth=OAuth2(id="acme", scopes=["email"]))
async def who_am_i(context: ToolContext) -> dict[str, str]:
    """Who the user is at the acme provider, asked with the user's own token."""
    token = context.get_auth_token_or_empty()
    async with httpx.AsyncClient() as client:
        resp = await client.get(os.environ["ACME_USERINFO_URL"], headers={"Authorization": f"Bearer {token}"})
    if resp.status_code == 401:
        raise UpstreamError("the provider refused the token", status_code=401)
    info = resp.json()
    return {
        "sub": str(info.get("sub", "")),
        "user_id": context.user_id or "",
        "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:16],
    }


@tool(requires_auth=OAuth2(id="acme", scopes=["read"]))
def ping(context: ToolContext) -> str:
    """Answer pong; needs the user's acme authorization but calls nothing (the benchmark's no-op tool)."""
    return "pong" if context.get_auth_token_or_empty() else "no token"


@tool(requires_auth=OAuth2(id="acme-keys"))
def key_info(context: ToolContext) -> dict[str, str]:
    """A short hash of the API key the engine sent as the token, and the fields entered with it."""
    key = context.get_auth_token_or_empty()
    info = (context.authorization.user_info if context.authorization else None) or {}
    return {
        "key_sha256": hashlib.sha256(key.encode()).hexdigest()[:16] if key else "",
        **{str(k): str(v) for k, v in info.items()},
    }


@tool(requires_secrets=["GREETING"])
def secret(context: ToolContext) -> str:
    """The greeting the engine passes as a secret."""
    return context.get_secret("GREETING")


def build_app() -> FastAPI:
    catalog = ToolCatalog()
    for func in (say, who_am_i, ping, secret, key_info):
        catalog.add_tool(func, "Echo")
    app = FastAPI()
    worker = FastAPIWorker(app, secret=os.environ["ARCADE_WORKER_SECRET"])
    worker.catalog = catalog
    return app


class _Server(uvicorn.Server):
    async def startup(self, sockets: list | None = None) -> None:  # type: ignore[type-arg]
        await super().startup(sockets)
        port = self.servers[0].sockets[0].getsockname()[1]
        print(json.dumps({"port": port}), flush=True)


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8002
    config = uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    _Server(config).run()


if __name__ == "__main__":
    main()
