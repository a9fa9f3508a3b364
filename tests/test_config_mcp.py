"""engine.config.mcp: the mcp: section's cross-checks (auth modes, gateways, listed OAuth clients)."""

from __future__ import annotations

import pytest

from engine.errors import ConfigError
from engine.providers.load import load_text

BASE = """
api: {development: true}
security: {user_verifier: {mode: VERIFIER}}
auth:
  providers:
    - {id: corp, client_id: c, client_secret: s, oauth2: {issuer: "https://idp.example", discovery: true}}
LOGIN
"""


def text(mcp: str, *, verifier: str = "login", login: bool = True) -> str:
    head = BASE.replace("VERIFIER", verifier).replace("LOGIN", "login: {provider: corp}" if login else "")
    return head + mcp


def error(body: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(body, source="engine.yaml", env={})
    return info.value


def test_oauth_loads_with_defaults() -> None:
    """mcp.auth: oauth with login and the login verifier: registration open, CIMD on, 15 min tokens."""
    mcp = load_text(text("mcp: {auth: oauth}\n"), env={}).config.mcp
    assert mcp.auth == "oauth" and mcp.oauth.registration == "open" and mcp.oauth.client_metadata.enabled
    assert float(mcp.oauth.access_token_ttl) == 900 and mcp.oauth.client_metadata.max_bytes == 5120


def test_oauth_needs_login_and_the_login_verifier() -> None:
    """Without login: or with user_verifier none, mcp.auth: oauth is refused with the reason."""
    assert "login: section" in str(error(text("mcp: {auth: oauth}\n", verifier="none", login=False)))
    err = error(text("mcp: {auth: oauth}\n", verifier="none"))
    assert "user_verifier.mode: login" in str(err) and err.path == "mcp.auth"


def test_jwt_needs_an_issuer() -> None:
    """mcp.auth: jwt without mcp.jwt, or with a plain-http issuer off loopback in production, is refused."""
    assert "mcp.jwt" in str(error(text("mcp: {auth: jwt}\n")))
    ok = load_text(
        text("mcp: {auth: jwt, jwt: {issuer: 'https://idp.example', user_claim: email}}\n"), env={}
    )
    assert ok.config.mcp.jwt is not None and ok.config.mcp.jwt.user_claim == "email"


@pytest.mark.parametrize(
    ("gateways", "path"),
    [
        ("[{slug: Mail, tools: ['Gmail.*']}]", "mcp.gateways[0].slug"),
        ("[{slug: mail, tools: ['a']}, {slug: mail, tools: ['b']}]", "mcp.gateways[1].slug"),
        ("[{slug: mail}]", "mcp.gateways[0].tools"),
        ("[{slug: mail, tools: ['a'], auth: basic}]", "mcp.gateways[0].auth"),
    ],
)
def test_bad_gateways_are_refused(gateways: str, path: str) -> None:
    """A slug that is not a path segment, a duplicate, no tools, or an unknown auth: refused at its path."""
    assert error(text(f"mcp: {{gateways: {gateways}}}\n")).path == path


def test_listed_clients_need_safe_redirect_uris() -> None:
    """A listed client's redirect URI must be https (or loopback http) without a fragment."""
    bad = "mcp: {auth: oauth, oauth: {clients: [{client_id: a, redirect_uris: ['http://app.example/cb']}]}}\n"
    assert error(text(bad)).path == "mcp.oauth.clients[0].redirect_uris[0]"
    good = "mcp: {auth: oauth, oauth: {clients: [{client_id: a, redirect_uris: ['http://127.0.0.1/cb']}]}}\n"
    assert load_text(text(good), env={}).config.mcp.oauth.clients[0].client_id == "a"


@pytest.mark.parametrize("origin", ["*", "https://app.example/path", "app.example", "ftp://app.example"])
def test_allowed_origins_must_be_origins(origin: str) -> None:
    """mcp.allowed_origins entries are scheme://host[:port] origins; *, a path or no scheme is an error."""
    with pytest.raises(ConfigError) as info:
        load_text(
            f"api: {{development: true}}\nmcp:\n  allowed_origins: ['https://ok.example', '{origin}']\n"
        )
    assert info.value.path == "mcp.allowed_origins[1]" and "must be an origin" in info.value.msg
    loaded = load_text(
        "api: {development: true}\nmcp: {allowed_origins: ['http://localhost:6274', 'https://a.example/']}\n"
    )
    assert loaded.config.mcp.allowed_origins == ("http://localhost:6274", "https://a.example/")
