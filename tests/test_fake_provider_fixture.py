"""The fake_provider fixture: code + PKCE exchange, quirky answers, faults, rotation, revocation, records."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import aiohttp
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from tests.plugins.fake_provider import FakeProvider

REDIRECT = "http://127.0.0.1:9/cb"


def _basic(p: FakeProvider, secret: str | None = None) -> dict[str, str]:
    return {"Authorization": aiohttp.encode_basic_auth(p.client_id, secret or p.client_secret)}


async def _code(
    session: aiohttp.ClientSession, p: FakeProvider, verifier: str, scope: str = "repo read"
) -> str:
    q = {
        "response_type": "code",
        "client_id": p.client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-1",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    async with session.get(p.url("/authorize?" + urlencode(q)), allow_redirects=False) as resp:
        assert resp.status == 302
        location = resp.headers["Location"]
    got = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(REDIRECT + "?")
    assert got["state"] == "st-1" and got["iss"] == p.issuer
    return got["code"]


async def _exchange(
    session: aiohttp.ClientSession, p: FakeProvider, *, basic: bool = True
) -> aiohttp.ClientResponse:
    verifier = secrets.token_urlsafe(48)
    form = {
        "grant_type": "authorization_code",
        "code": await _code(session, p, verifier),
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    headers = _basic(p) if basic else {}
    if not basic:
        form |= {"client_id": p.client_id, "client_secret": p.client_secret}
    resp = await session.post(p.url("/token"), data=form, headers=headers)
    await resp.read()
    return resp


async def _refresh(session: aiohttp.ClientSession, p: FakeProvider, token: str) -> tuple[int, Any]:
    form = {"grant_type": "refresh_token", "refresh_token": token}
    async with session.post(p.url("/token"), data=form, headers=_basic(p)) as r:
        return r.status, await r.json()


async def test_code_exchange_records_the_request(fake_provider: FakeProvider) -> None:
    """A PKCE code exchange answers JSON tokens; the request, its Basic auth and the tokens are recorded."""
    async with aiohttp.ClientSession() as session:
        resp = await _exchange(session, fake_provider)
        body = await resp.json()
    assert resp.status == 200
    assert body["scope"] == "repo read" and body["expires_in"] == 3600
    assert fake_provider.issued_tokens == [body["access_token"], body["refresh_token"]]
    (call,) = fake_provider.token_requests
    assert call.basic_auth == (fake_provider.client_id, fake_provider.client_secret)
    assert call.form["grant_type"] == "authorization_code" and "code_verifier" in call.form
    assert call.form["code_verifier"] not in repr(call) and call.form["code"] not in repr(call)


async def test_code_is_single_use_and_pkce_checked(fake_provider: FakeProvider) -> None:
    """A wrong verifier, a replayed code and a wrong client secret are refused."""
    async with aiohttp.ClientSession() as session:
        code = await _code(session, fake_provider, "v" * 43)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": "w" * 43,
        }
        auth = _basic(fake_provider)
        async with session.post(fake_provider.url("/token"), data=form, headers=auth) as resp:
            assert (resp.status, (await resp.json())["error"]) == (400, "invalid_grant")
        async with session.post(
            fake_provider.url("/token"), data={**form, "code_verifier": "v" * 43}, headers=auth
        ) as r:
            assert r.status == 400  # the failed attempt used the code up
        bad = _basic(fake_provider, "nope")
        async with session.post(fake_provider.url("/token"), data=form, headers=bad) as resp:
            assert (resp.status, (await resp.json())["error"]) == (401, "invalid_client")


async def test_github_style_form_answer_and_post_auth(fake_provider: FakeProvider) -> None:
    """Mode "form" answers form-encoded, comma-separated scope, no expires_in; client_secret_post works."""
    fake_provider.token_mode = "form"
    async with aiohttp.ClientSession() as session:
        resp = await _exchange(session, fake_provider, basic=False)
        body = dict(parse_qsl(await resp.text()))
    assert resp.content_type == "application/x-www-form-urlencoded"
    assert body["scope"] == "repo,read" and "expires_in" not in body and body["access_token"]
    assert fake_provider.token_requests[0].basic_auth is None


async def test_slack_style_answers(fake_provider: FakeProvider) -> None:
    """Mode "slack" nests the user token under authed_user; "slack_error" is a 200 with ok false."""
    fake_provider.token_answers = ["slack", "slack_error"]
    async with aiohttp.ClientSession() as session:
        ok = await (await _exchange(session, fake_provider)).json()
        bad_resp = await _exchange(session, fake_provider)
        bad = await bad_resp.json()
    assert ok["ok"] is True and ok["authed_user"]["access_token"] in fake_provider.issued_tokens
    assert ok["authed_user"]["refresh_token"] and ok["access_token"].startswith("xoxb-")
    assert bad_resp.status == 200 and bad == {"ok": False, "error": "invalid_code"}


async def test_faults_in_order(fake_provider: FakeProvider) -> None:
    """Queued answers come one per call: 500, 429 + Retry-After, invalid_grant, slow, then no expires_in."""
    fake_provider.token_answers = ["500", "429", "invalid_grant", "slow", "no_expires"]
    fake_provider.slow_seconds = 0.2
    async with aiohttp.ClientSession() as session:
        assert (await _exchange(session, fake_provider)).status == 500
        r429 = await _exchange(session, fake_provider)
        assert (r429.status, r429.headers["Retry-After"]) == (429, "30")
        assert (await _exchange(session, fake_provider)).status == 400
        slow = await _exchange(session, fake_provider)
        assert slow.status == 200 and "expires_in" in await slow.json()
        plain = await _exchange(session, fake_provider)
        assert plain.status == 200 and "expires_in" not in await plain.json()
    assert fake_provider.token_answers == [] and len(fake_provider.token_requests) == 5


async def test_refresh_rotating_and_not(fake_provider: FakeProvider) -> None:
    """Rotation kills the presented refresh token; without it the answer has none and the old one lives."""
    async with aiohttp.ClientSession() as session:
        first = await (await _exchange(session, fake_provider)).json()
        status, second = await _refresh(session, fake_provider, first["refresh_token"])
        assert status == 200 and second["refresh_token"] != first["refresh_token"]
        assert (await _refresh(session, fake_provider, first["refresh_token"]))[0] == 400
        fake_provider.rotate_refresh = False
        status, third = await _refresh(session, fake_provider, second["refresh_token"])
        assert status == 200 and "refresh_token" not in third and third["scope"] == "repo read"
        assert (await _refresh(session, fake_provider, second["refresh_token"]))[0] == 200


async def test_userinfo_revoke_introspect(fake_provider: FakeProvider) -> None:
    """Userinfo and introspection accept a live token; after /revoke (recorded) both reject it."""
    async with aiohttp.ClientSession() as session:
        body = await (await _exchange(session, fake_provider)).json()
        bearer = {"Authorization": "Bearer " + body["access_token"]}
        async with session.get(fake_provider.url("/userinfo"), headers=bearer) as resp:
            assert resp.status == 200 and (await resp.json())["sub"] == "u-1"
        form = {"token": body["access_token"]}
        async with session.post(fake_provider.url("/introspect"), data=form) as resp:
            assert (await resp.json())["active"] is True
        async with session.post(fake_provider.url("/revoke"), data=form) as resp:
            assert resp.status == 200
        async with session.post(fake_provider.url("/introspect"), data=form) as resp:
            assert (await resp.json())["active"] is False
        async with session.get(fake_provider.url("/userinfo"), headers=bearer) as resp:
            assert resp.status == 401
        async with session.get(fake_provider.url("/.well-known/oauth-authorization-server")) as resp:
            assert (await resp.json())["token_endpoint"] == fake_provider.url("/token")
    assert [r.form["token"] for r in fake_provider.revocations] == [body["access_token"]]
    assert len(fake_provider.introspections) == 2


async def test_authorize_error_and_no_iss(fake_provider: FakeProvider) -> None:
    """authorize_error redirects with that error and send_iss False leaves iss out."""
    fake_provider.authorize_error = "access_denied"
    fake_provider.send_iss = False
    q = urlencode({"redirect_uri": REDIRECT, "state": "s"})
    async with (
        aiohttp.ClientSession() as session,
        session.get(fake_provider.url("/authorize?" + q), allow_redirects=False) as resp,
    ):
        got = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert got == {"state": ["s"], "error": ["access_denied"]}
