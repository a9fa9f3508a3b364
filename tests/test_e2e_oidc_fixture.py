"""The oidc-provider e2e fixture: code + PKCE S256, rotating refresh, revocation, signed id_token."""

from __future__ import annotations

import base64
import secrets
import warnings
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.plugins.oidc import OIDCTestProvider, follow_login
from tests.plugins.token_scan import remember

with (
    warnings.catch_warnings()
):  # authlib.jose is deprecated in favour of joserfc, still what the task asks for
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, jwt

pytestmark = pytest.mark.e2e

REDIRECT = "http://127.0.0.1:9/cb"  # port 9 never answers: the callback is parsed, not requested


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def _authorize(
    session: aiohttp.ClientSession,
    op: OIDCTestProvider,
    *,
    scope: str = "openid email offline_access",
    client_id: str | None = None,
    redirect_uri: str = REDIRECT,
    account: str = "alice",
    extra: dict[str, str] | None = None,
) -> tuple[dict[str, str], str]:
    """Run the front channel; returns (callback params, code_verifier)."""
    meta = await op.discovery()
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client_id or op.client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "nonce": "n-" + secrets.token_urlsafe(8),
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        "prompt": "consent",
        **(extra or {}),
    }
    final = await follow_login(
        session, meta["authorization_endpoint"] + "?" + urlencode(params), account=account
    )
    assert final.startswith(redirect_uri + "?")
    got = {k: v[0] for k, v in parse_qs(urlsplit(final).query).items()}
    assert got.get("state") == params["state"], got
    return got, verifier


async def _token(
    session: aiohttp.ClientSession, op: OIDCTestProvider, form: dict[str, str]
) -> tuple[int, Any]:
    headers = {"Authorization": _basic(op.client_id, op.client_secret)}
    async with session.post(op.url("/token"), data=form, headers=headers) as resp:
        body = await resp.json()
    for key in ("access_token", "refresh_token", "id_token"):
        if key in body:
            remember(body[key])
    return resp.status, body


async def _exchange(session: aiohttp.ClientSession, op: OIDCTestProvider, **kw: Any) -> dict[str, Any]:
    got, verifier = await _authorize(session, op, **kw)
    form = {
        "grant_type": "authorization_code",
        "code": got["code"],
        "redirect_uri": kw.get("redirect_uri", REDIRECT),
        "code_verifier": verifier,
    }
    status, body = await _token(session, op, form)
    assert status == 200, body
    return body


async def test_code_pkce_exchange_gives_tokens_and_iss(oidc_provider: OIDCTestProvider) -> None:
    """The authorization response carries iss (RFC 9207); the code exchange with S256 PKCE returns tokens."""
    async with aiohttp.ClientSession() as session:
        got, verifier = await _authorize(session, oidc_provider)
        assert got["iss"] == oidc_provider.issuer
        form = {"grant_type": "authorization_code", "code": got["code"], "redirect_uri": REDIRECT}
        status, body = await _token(session, oidc_provider, {**form, "code_verifier": "x" * 43})
        assert (status, body["error"]) == (400, "invalid_grant")
        got, verifier = await _authorize(session, oidc_provider)
        status, body = await _token(
            session, oidc_provider, {**form, "code": got["code"], "code_verifier": verifier}
        )
        assert status == 200, body
        assert body["token_type"] == "Bearer" and body["access_token"] and body["refresh_token"]
        assert set(body["scope"].split()) == {"openid", "email", "offline_access"}


async def test_pkce_is_required(oidc_provider: OIDCTestProvider) -> None:
    """An authorization request without code_challenge is refused."""
    meta = await oidc_provider.discovery()
    q = {
        "response_type": "code",
        "client_id": oidc_provider.client_id,
        "redirect_uri": REDIRECT,
        "scope": "openid",
    }
    async with aiohttp.ClientSession() as session:
        final = await follow_login(session, meta["authorization_endpoint"] + "?" + urlencode(q))
    assert parse_qs(urlsplit(final).query)["error"] == ["invalid_request"]
    assert meta["code_challenge_methods_supported"] == ["S256"]


async def test_id_token_is_signed_by_the_published_keys(oidc_provider: OIDCTestProvider) -> None:
    """The id_token verifies against the server's JWKS (RS256 and ES256 keys) and names the account."""
    async with aiohttp.ClientSession() as session:
        body = await _exchange(session, oidc_provider, account="bob")
        async with session.get(oidc_provider.url("/jwks")) as resp:
            jwks = await resp.json()
    assert {k["alg"] for k in jwks["keys"]} == {"RS256", "ES256"}
    assert all("d" not in k for k in jwks["keys"])
    claims = jwt.decode(body["id_token"], JsonWebKey.import_key_set(jwks))
    claims.validate()
    assert claims["iss"] == oidc_provider.issuer
    assert claims["aud"] == oidc_provider.client_id
    assert claims["sub"] == "bob"
    assert claims["email"] == "bob@example.test"
    assert claims["nonce"].startswith("n-")


async def test_refresh_rotates_the_refresh_token(oidc_provider: OIDCTestProvider) -> None:
    """A refresh answers a new refresh token and the old one stops working."""
    async with aiohttp.ClientSession() as session:
        first = await _exchange(session, oidc_provider)
        status, second = await _token(
            session, oidc_provider, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        )
        assert status == 200, second
        assert second["refresh_token"] != first["refresh_token"]
        assert second["access_token"] != first["access_token"]
        status, again = await _token(
            session, oidc_provider, {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
        )
        assert (status, again["error"]) == (400, "invalid_grant")


async def test_revocation_userinfo_and_introspection(oidc_provider: OIDCTestProvider) -> None:
    """Userinfo and introspection accept a fresh access token; after RFC 7009 revocation both reject it."""
    auth = {"Authorization": _basic(oidc_provider.client_id, oidc_provider.client_secret)}
    async with aiohttp.ClientSession() as session:
        body = await _exchange(session, oidc_provider, scope="openid email")
        bearer = {"Authorization": "Bearer " + body["access_token"]}
        async with session.get(oidc_provider.url("/me"), headers=bearer) as resp:
            assert resp.status == 200
            assert (await resp.json())["email"] == "alice@example.test"
        form = {"token": body["access_token"]}
        async with session.post(oidc_provider.url("/token/introspection"), data=form, headers=auth) as resp:
            assert (await resp.json())["active"] is True
        async with session.post(oidc_provider.url("/token/revocation"), data=form, headers=auth) as resp:
            assert resp.status == 200
        async with session.post(oidc_provider.url("/token/introspection"), data=form, headers=auth) as resp:
            assert (await resp.json())["active"] is False
        async with session.get(oidc_provider.url("/me"), headers=bearer) as resp:
            assert resp.status == 401


async def test_api_scopes_and_post_client(oidc_provider: OIDCTestProvider) -> None:
    """The client_secret_post client gets the custom repo/read scopes granted for the API resource."""
    async with aiohttp.ClientSession() as session:
        got, verifier = await _authorize(
            session, oidc_provider, scope="openid repo read", client_id="post-client"
        )
        form = {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": oidc_provider.post_client_id,
            "client_secret": oidc_provider.post_client_secret,
        }
        async with session.post(oidc_provider.url("/token"), data=form) as resp:
            body = await resp.json()
            assert resp.status == 200, body
    remember(body["access_token"])
    remember(body["refresh_token"])
    assert set(body["scope"].split()) >= {"repo", "read"}
    assert "id_token" in body


async def test_registered_client_and_account_revocation(oidc_provider: OIDCTestProvider) -> None:
    """A client registered at runtime works; revoking the account's grants kills its refresh token."""
    redirect = "http://127.0.0.1:9/exact/callback"
    client_id, secret = await oidc_provider.register_client([redirect])
    async with aiohttp.ClientSession() as session:
        got, verifier = await _authorize(
            session, oidc_provider, client_id=client_id, redirect_uri=redirect, account="carol"
        )
        form = {
            "grant_type": "authorization_code",
            "code": got["code"],
            "redirect_uri": redirect,
            "code_verifier": verifier,
        }
        async with session.post(
            oidc_provider.url("/token"), data=form, headers={"Authorization": _basic(client_id, secret)}
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        remember(body["refresh_token"])
        await oidc_provider.revoke_account("carol")
        form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
        async with session.post(
            oidc_provider.url("/token"), data=form, headers={"Authorization": _basic(client_id, secret)}
        ) as resp:
            assert (resp.status, (await resp.json())["error"]) == (400, "invalid_grant")


async def test_private_server_with_short_ttl_and_offline_access_only(start_oidc_provider: Any) -> None:
    """A private server honours access_ttl and issues refresh tokens only for offline_access."""
    op = start_oidc_provider(access_ttl=5, issue_refresh_token="offline_access")
    async with aiohttp.ClientSession() as session:
        body = await _exchange(session, op, scope="openid")
        assert body["expires_in"] <= 5 and "refresh_token" not in body
        body = await _exchange(session, op, scope="openid offline_access")
        assert "refresh_token" in body
