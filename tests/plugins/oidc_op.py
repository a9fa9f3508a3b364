"""panva's oidc-provider (tests/e2e/oidc/server.mjs, from its lock file) on 127.0.0.1, one per test.

`oidc_op(access_ttl=3600)` starts one and returns an :class:`OpenIDProvider`; `await op.register(
redirect_uri)` registers a confidential client (client_secret_basic) allowed the code and refresh
grants for that redirect URI and returns ``(client_id, client_secret)``. Login and consent finish
without forms, as the account named by ``login_hint`` (default ``alice``). Skips when node or the
installed package is missing, but fails under ``CI=true``. (tests/plugins/oidc.py has the
session-wide fixture of the same server.)
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

HERE = Path(__file__).resolve().parent.parent / "e2e" / "oidc"


class OpenIDProvider:
    def __init__(self, proc: asyncio.subprocess.Process, issuer: str) -> None:
        self.proc = proc
        self.issuer = issuer

    async def register(self, redirect_uri: str) -> tuple[str, str]:
        body = {
            "redirect_uris": [redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "client_secret_basic",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.issuer + "/test/clients", json=body) as resp,
        ):
            data: dict[str, Any] = await resp.json()
            assert resp.status == 201, data
        return data["client_id"], data["client_secret"]

    async def revoke_account(self, account: str) -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.issuer}/test/revoke", params={"account": account}) as resp,
        ):
            assert resp.status == 204

    def provider_yaml(
        self, client_id: str, client_secret: str, *, extra_oauth2: str = "", id: str = "op"
    ) -> str:
        return f"""
auth:
  providers:
    - id: {id}
      client_id: {client_id}
      client_secret: {client_secret}
      oauth2:
        issuer: "{self.issuer}"
        discovery: true
        default_scopes: [openid, offline_access]
        authorization_request: {{params: {{prompt: consent}}}}
        token_request: {{auth_method: client_secret_basic}}
{extra_oauth2}
"""


StartOP = Callable[..., Awaitable[OpenIDProvider]]


@pytest.fixture
async def oidc_op() -> AsyncIterator[StartOP]:
    node = shutil.which("node")
    if node is None or not (HERE / "node_modules" / "oidc-provider").is_dir():
        reason = "node or tests/oidc/node_modules missing (./scripts/test installs it with npm ci)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    started: list[OpenIDProvider] = []

    async def start(access_ttl: int = 3600) -> OpenIDProvider:
        assert node is not None
        proc = await asyncio.create_subprocess_exec(
            node,
            str(HERE / "server.mjs"),
            cwd=HERE,
            env={**os.environ, "ACCESS_TTL": str(access_ttl)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        op = OpenIDProvider(proc, json.loads(line)["issuer"])
        started.append(op)
        return op

    yield start
    for op in started:
        if op.proc.returncode is None:
            op.proc.terminate()
            try:
                await asyncio.wait_for(op.proc.wait(), 10)
            except TimeoutError:
                op.proc.kill()
