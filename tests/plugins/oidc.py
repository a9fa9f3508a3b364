"""panva's oidc-provider (tests/e2e/oidc, installed from its lock file) on 127.0.0.1 for end-to-end tests.

Fixtures
    ``oidc_provider`` (session scope) -> :class:`OIDCTestProvider` started with the default config.
    ``start_oidc_provider`` (function scope) -> ``start(**config) -> OIDCTestProvider`` for a private server
    with its own config (``access_ttl=5``, ``issue_refresh_token="offline_access"``, ``clients=[...]``,
    ``refresh_ttl``); every server it started is stopped after the test.
Both are plain (synchronous) fixtures, so they work from any event loop. They skip when ``node`` or
``tests/e2e/oidc/node_modules`` is missing (``./scripts/test`` runs ``npm ci`` there) but FAIL under
``CI=true``.

Redirect URIs: the two default clients are registered with ``http://127.0.0.1/*``; the server matches a
loopback redirect URI registered without a port on ANY port (RFC 8252 section 7.3) and a trailing ``*`` as
any path, so an engine started on port 0 needs nothing registered: use ``op.client_id``/``op.client_secret``
(client_secret_basic) or ``op.post_client_id``/``op.post_client_secret`` (client_secret_post). For an exact
registration: ``await op.register_client([redirect_uri], auth_method=..., **metadata) -> (client_id,
client_secret)`` (POST /test/clients on the server, stored in its memory adapter).

Login and consent need no form: ``await follow_login(session, authorization_url, account="bob")`` follows the
redirects (keeping the provider's cookies itself, so any ``aiohttp.ClientSession`` will do) and returns the
final redirect to the client (``code``, ``state``, ``iss`` or an ``error``) without requesting it.
``await op.revoke_account("alice")`` destroys all of alice's grants and tokens (the user removed the app).

Scopes: openid email profile offline_access, plus ``repo read write`` for the API resource
``urn:keyturn:api`` (a token asked with API scopes is for that API, not for userinfo). Refresh tokens are
issued on every code exchange by default and rotate on every use; PKCE S256 is required.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import aiohttp
import pytest

SERVER_DIR = Path(__file__).resolve().parent.parent / "e2e" / "oidc"
START_TIMEOUT = 30.0


class OIDCTestProvider:
    """A running oidc-provider: its issuer, the default clients, and the test-only admin routes."""

    client_id = "basic-client"
    client_secret = "basic-secret"
    post_client_id = "post-client"
    post_client_secret = "post-secret"

    def __init__(self, proc: subprocess.Popen[str], issuer: str, port: int) -> None:
        self.proc = proc
        self.issuer = issuer
        self.port = port

    def __repr__(self) -> str:
        return f"OIDCTestProvider(issuer={self.issuer!r})"

    def url(self, path: str) -> str:
        return self.issuer + path

    @property
    def discovery_url(self) -> str:
        return self.url("/.well-known/openid-configuration")

    async def discovery(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as session, session.get(self.discovery_url) as resp:
            resp.raise_for_status()
            data: dict[str, Any] = await resp.json()
            return data

    async def register_client(
        self, redirect_uris: list[str], *, auth_method: str = "client_secret_basic", **metadata: Any
    ) -> tuple[str, str]:
        """Register a confidential client (code + refresh grants); returns (client_id, client_secret)."""
        body = {"redirect_uris": redirect_uris, "token_endpoint_auth_method": auth_method, **metadata}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url("/test/clients"), json=body) as resp,
        ):
            data: dict[str, Any] = await resp.json()
            assert resp.status == 201, f"client registration refused: {data.get('error_description')}"
        return data["client_id"], data["client_secret"]

    async def revoke_account(self, account: str) -> None:
        """Destroy every grant of ``account`` and the tokens issued under them."""
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url("/test/revoke"), params={"account": account}) as resp,
        ):
            assert resp.status == 204, f"revoking {account}'s grants answered {resp.status}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _node_or_skip() -> str:
    node = shutil.which("node")
    reason = ""
    if node is None:
        reason = "node is not installed (needed for the oidc-provider e2e server)"
    elif not (SERVER_DIR / "node_modules" / "oidc-provider").is_dir():
        reason = "tests/e2e/oidc/node_modules missing: run `npm ci` there (./scripts/test does)"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert node is not None
    return node


def _start(node: str, config: dict[str, Any]) -> OIDCTestProvider:
    env = {**os.environ, "OIDC_CONFIG": json.dumps(config)}
    proc = subprocess.Popen(
        [node, str(SERVER_DIR / "server.mjs"), "--port", "0"],
        cwd=SERVER_DIR,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or not line[0].strip():
        proc.kill()
        proc.wait(10)
        pytest.fail(
            f"oidc-provider server did not start within {START_TIMEOUT:.0f} s (exit code {proc.returncode})"
        )
    info = json.loads(line[0])
    return OIDCTestProvider(proc, info["issuer"], info["port"])


@pytest.fixture(scope="session")
def oidc_provider() -> Iterator[OIDCTestProvider]:
    node = _node_or_skip()
    op = _start(node, {})
    try:
        yield op
    finally:
        op.stop()


@pytest.fixture
def start_oidc_provider() -> Iterator[Any]:
    node = _node_or_skip()
    started: list[OIDCTestProvider] = []

    def start(**config: Any) -> OIDCTestProvider:
        op = _start(node, config)
        started.append(op)
        return op

    try:
        yield start
    finally:
        for op in started:
            op.stop()


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


async def follow_login(
    session: aiohttp.ClientSession, url: str, *, account: str = "alice", max_hops: int = 12
) -> str:
    """Follow an authorization URL through login and consent; return the redirect to the client, unrequested.

    The account is passed as ``login_hint`` on the interaction URL. Cookies of the provider are kept here
    (aiohttp's default jar ignores cookies of IP hosts). Raises AssertionError when the provider answers
    anything but a redirect (its JSON error is in the message).
    """
    provider_origin = _origin(url)
    cookies: dict[str, str] = {}
    for _ in range(max_hops):
        parts = urlsplit(url)
        if parts.path.startswith("/interaction/"):
            query = dict(parse_qsl(parts.query))
            query["login_hint"] = account
            url = urlunsplit(parts._replace(query=urlencode(query)))
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        async with session.get(url, allow_redirects=False, headers=headers) as resp:
            for name, morsel in resp.cookies.items():
                if morsel.value:
                    cookies[name] = morsel.value
                else:
                    cookies.pop(name, None)
            if resp.status not in (302, 303, 307):
                body = await resp.text()
                raise AssertionError(
                    f"authorization stopped at {parts.path} with HTTP {resp.status}: {body[:500]}"
                )
            location = urljoin(url, resp.headers["Location"])
        if _origin(location) != provider_origin:
            return location
        url = location
    raise AssertionError(f"no redirect to the client after {max_hops} hops")
