"""Keyturn with ``login:`` at panva's oidc-provider, and browsers that sign in to it (tests of issue 15).

``login_engine(verifier="login", extra="")`` starts an engine whose ``login.provider`` is ``corp`` and whose
connection provider ``op`` is the same oidc-provider (the session-wide ``oidc_provider`` fixture; its
default client accepts any loopback redirect URI). ``new_browser(engine)`` is an aiohttp session with a
cookie jar that, like a real browser, keeps Secure cookies for the loopback engine. ``await
sign_in(engine, browser, "alice")`` goes through ``/login`` and the provider and returns the callback's
response (status, headers, Set-Cookie); ``await finish_flow(engine, browser, url, "alice")`` opens a flow
link and follows it to its end, returning the final URL and status.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest

from tests.plugins.keyturn_engine import API_KEY

# tests.plugins.oidc is imported in the functions below: it is loaded as a plugin after this module
OIDCTestProvider = Any

SESSION_COOKIE = "__Host-keyturn_session"


def login_yaml(
    op: OIDCTestProvider,
    *,
    verifier: str = "login",
    login: str = "",
    extra: str = "",
    rate_limiting: str = "",
) -> str:
    login = login or "login: {provider: corp, user_claim: email, session_ttl: 1h}"
    limits = f"\n  rate_limiting: {rate_limiting}" if rate_limiting else ""
    return f"""
security:
  api_keys: ['{API_KEY}']
  user_verifier: {{mode: {verifier}}}{limits}
auth:
  providers:
    - id: corp
      description: Corp sign-in
      client_id: {op.client_id}
      client_secret: {op.client_secret}
      oauth2: {{issuer: "{op.issuer}", discovery: true, token_request: {{auth_method: client_secret_basic}}}}
    - id: op
      description: Example Docs
      client_id: {op.client_id}
      client_secret: {op.client_secret}
      oauth2:
        issuer: "{op.issuer}"
        discovery: true
        default_scopes: [openid, offline_access]
        authorization_request: {{params: {{prompt: consent}}}}
        token_request: {{auth_method: client_secret_basic}}
{login}
{extra}
"""


def new_browser(engine: Any) -> aiohttp.ClientSession:
    jar = aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[engine.url])
    return aiohttp.ClientSession(cookie_jar=jar)


async def sign_in(
    engine: Any, browser: aiohttp.ClientSession, account: str, *, next_path: str | None = None
) -> aiohttp.ClientResponse:
    """/login -> the provider (as ``account``) -> /login/callback; the callback's response (read)."""
    params = {"next": next_path} if next_path is not None else {}
    async with browser.get(engine.url + "/login", params=params, allow_redirects=False) as resp:
        assert resp.status == 302, await resp.text()
        location = resp.headers["Location"]
    from tests.plugins.oidc import follow_login

    callback = await follow_login(browser, location, account=account)
    async with browser.get(callback, allow_redirects=False) as resp:
        await resp.read()
        return resp


async def finish_flow(
    engine: Any,
    browser: aiohttp.ClientSession,
    url: str,
    account: str,
    *,
    max_hops: int = 12,
    visited: list[str] | None = None,
) -> tuple[int, str, str]:
    """Follow a flow link (and any sign-in it asks for) to its end: ``(status, final URL, body)``."""
    from tests.plugins.oidc import follow_login

    for _ in range(max_hops):
        if visited is not None:
            visited.append(url)
        if not url.startswith(engine.url):  # at the provider: sign in there as ``account``
            url = await follow_login(browser, url, account=account)
            continue
        async with browser.get(url, allow_redirects=False) as resp:
            body = await resp.text()
            if resp.status not in (302, 303):
                return resp.status, url, body
            url = urljoin(url, resp.headers["Location"])
    raise AssertionError(f"no end after {max_hops} hops")


StartLogin = Callable[..., Awaitable[Any]]


@pytest.fixture
async def login_engine(keyturn_engine: Any, oidc_provider: OIDCTestProvider) -> AsyncIterator[StartLogin]:
    browsers: list[aiohttp.ClientSession] = []

    async def start(**kw: Any) -> Any:
        engine = await keyturn_engine(login_yaml(oidc_provider, **kw))
        engine.op = oidc_provider

        def browser() -> aiohttp.ClientSession:
            b = new_browser(engine)
            browsers.append(b)
            return b

        engine.new_browser = browser
        return engine

    yield start
    for b in browsers:
        await b.close()
