"""OpenID Connect in the handshake: discovery, iss (RFC 9207), id_token checks, JWKS rotation, sub."""

from __future__ import annotations

from typing import Any

import pytest

from tests.plugins.mini_provider import USER, MiniProvider, acme_config, oidc_config


async def start_flow(engine: Any) -> dict[str, Any]:
    body = {"user_id": USER, "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
    status, answer = await engine.api("POST", "/v1/auth/authorize", json=body)
    assert status == 200, answer
    return answer  # type: ignore[no-any-return]


async def click(engine: Any, url: str) -> Any:
    async with engine.browser.get(url, allow_redirects=False) as resp:
        provider_url = resp.headers["Location"]
    async with engine.browser.get(provider_url, allow_redirects=False) as resp:
        callback = resp.headers["Location"]
    return await engine.browser.get(callback, allow_redirects=False)


async def test_oidc_flow_completes(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """Discovery, nonce, iss and a valid id_token complete the flow; the subject is the id_token's sub."""
    engine = await keyturn_engine(oidc_config(mini_provider))
    flow = await start_flow(engine)
    assert flow["scopes"] == ["openid", "read"]
    resp = await click(engine, flow["url"])
    assert resp.status == 200, await resp.text()
    sent = mini_provider.authorize_params[-1]
    assert sent["nonce"] and sent["code_challenge_method"] == "S256"
    grant = await engine.store.grants.find(USER, "acme")
    assert grant.subject == "u-123" and grant.id_token


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("bad_sig", "invalid_id_token"),
        ("nonce", "invalid_id_token"),
        ("aud", "invalid_id_token"),
        ("exp", "invalid_id_token"),
        ("none", "invalid_id_token"),
    ],
)
async def test_bad_id_tokens_fail(
    keyturn_engine: Any, mini_provider: MiniProvider, fault: str, error: str
) -> None:
    """A bad signature, wrong nonce or aud, an expired token or alg none fail the flow and store nothing."""
    engine = await keyturn_engine(oidc_config(mini_provider))
    mini_provider.id_token_fault = fault
    flow = await start_flow(engine)
    resp = await click(engine, flow["url"])
    assert resp.status == 400
    stored = await engine.store.flows.get(flow["id"])
    assert stored.status == "failed" and stored.error == error
    assert await engine.store.grants.find(USER, "acme") is None


async def test_rotated_jwks_refetched(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """An id_token with a new kid triggers one JWKS re-fetch that finds the rotated key."""
    engine = await keyturn_engine(oidc_config(mini_provider))
    first = await start_flow(engine)
    assert (await click(engine, first["url"])).status == 200
    fetches = mini_provider.jwks_fetches
    mini_provider.id_token_fault = "new_kid"
    second = await engine.api(
        "POST",
        "/v1/auth/authorize",
        json={
            "user_id": "bob@example.test",
            "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}},
        },
    )
    assert (await click(engine, second[1]["url"])).status == 200
    assert mini_provider.jwks_fetches == fetches + 1


@pytest.mark.parametrize("mode", ["wrong", "missing"])
async def test_iss_checked(keyturn_engine: Any, mini_provider: MiniProvider, mode: str) -> None:
    """A callback whose iss is another issuer, or missing where the provider announces it, is refused."""
    engine = await keyturn_engine(oidc_config(mini_provider))
    mini_provider.iss_mode = mode
    flow = await start_flow(engine)
    resp = await click(engine, flow["url"])
    assert resp.status == 400
    assert (await engine.store.flows.get(flow["id"])).error == "invalid_iss"
    assert [c for c in mini_provider.token_calls if c.get("grant_type") == "authorization_code"] == []


async def test_userinfo_sub_must_match(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """User info whose sub differs from the id_token's fails the flow."""
    engine = await keyturn_engine(oidc_config(mini_provider))
    mini_provider.userinfo_sub = "someone-else"
    flow = await start_flow(engine)
    resp = await click(engine, flow["url"])
    assert resp.status == 400
    assert (await engine.store.flows.get(flow["id"])).error == "invalid_user_info"


async def test_discovery_issuer_mismatch(keyturn_engine: Any, mini_provider: MiniProvider) -> None:
    """Metadata naming another issuer is discarded: the start link shows a failure page."""
    config = oidc_config(mini_provider).replace(
        f'issuer: "{mini_provider.issuer}"', f'issuer: "{mini_provider.issuer}/tenant"'
    )
    engine = await keyturn_engine(config)
    flow = await start_flow(engine)
    async with engine.browser.get(flow["url"], allow_redirects=False) as resp:
        assert resp.status in (400, 502)
        assert "cannot be reached" in await resp.text()


async def test_id_token_from_a_provider_without_issuer_is_not_trusted(
    keyturn_engine: Any, mini_provider: MiniProvider
) -> None:
    """A plain OAuth 2 provider (no issuer, like Microsoft's template) sending an id_token completes."""
    engine = await keyturn_engine(acme_config(mini_provider, "        default_scopes: [openid]\n"))
    flow = await start_flow(engine)
    assert "openid" in flow["scopes"]
    mini_provider.id_token_fault = "bad_sig"  # not checked, so not believed either
    resp = await click(engine, flow["url"])
    assert resp.status == 200, await resp.text()
    grant = await engine.store.grants.find(USER, "acme")
    assert grant.subject == "u-123"  # from user info
    assert "nonce" not in mini_provider.authorize_params[-1]
