"""engine.providers.login: the login: section and security.user_verifier mode login."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.errors import ConfigError
from engine.providers.load import load_text

KEY = base64.b64encode(bytes(range(32))).decode()

PROVIDERS = """
auth:
  providers:
    - id: corp
      client_id: c
      client_secret: s
      oauth2: {issuer: "https://idp.example", discovery: true}
    - id: plain
      client_id: c
      client_secret: s
      oauth2:
        authorization_request: {endpoint: "https://plain.example/authorize"}
        token_request: {endpoint: "https://plain.example/token"}
"""


def config(extra: str, *, production: bool = False) -> str:
    head = (
        f"api: {{public_url: 'https://keyturn.example'}}\nsecurity: {{root_keys: [{{id: k, value: '{KEY}'}}]"
        if production
        else "api: {development: true}\nsecurity: {"
    )
    verifier = "user_verifier: {mode: login}" if "VERIFIER" in extra else ""
    extra = extra.replace("VERIFIER", "")
    sep = ", " if production and verifier else ""
    return f"{head}{sep}{verifier}}}\n" + PROVIDERS + textwrap.dedent(extra)


def error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_text(text, source="engine.yaml", env={})
    return info.value


def test_login_section_loads_with_defaults() -> None:
    """login: {provider} defaults to user_claim email and a 12 h session; domains are lower-cased."""
    loaded = load_text(config("login: {provider: corp, allowed_domains: [Example.COM]}\n"), env={})
    login = loaded.config.login
    assert login is not None and login.user_claim == "email" and float(login.session_ttl) == 12 * 3600
    assert login.allowed_domains == ("example.com",)


def test_login_provider_without_openid_is_refused() -> None:
    """A login provider without an issuer (plain OAuth 2) cannot say who signed in: refused, named."""
    err = error(config("login: {provider: plain}\n"))
    assert err.path == "login.provider" and "OpenID" in err.msg and err.line == 16


def test_unknown_login_provider_is_refused() -> None:
    """login.provider must be an auth.providers[] id."""
    err = error(config("login: {provider: okta}\n"))
    assert err.path == "login.provider" and "'okta'" in err.msg


def test_bad_domain_and_claim_are_refused() -> None:
    """allowed_domains entries are domains; user_claim is a claim name."""
    assert error(config("login: {provider: corp, allowed_domains: ['exa mple']}\n")).path == (
        "login.allowed_domains[0]"
    )
    assert error(config("login: {provider: corp, user_claim: 'a b'}\n")).path == "login.user_claim"
    assert error(config("login: {provider: corp, session_ttl: 5s}\n")).path == "login.session_ttl"


def test_verifier_mode_login_needs_the_login_section() -> None:
    """security.user_verifier.mode login without login: is refused at the mode's key."""
    err = error(config("VERIFIER"))
    assert err.path == "security.user_verifier.mode" and "login:" in err.msg


def test_verifier_mode_login_is_allowed_in_production() -> None:
    """mode login is a real verifier: allowed with an https public_url and development off."""
    loaded = load_text(config("VERIFIER\nlogin: {provider: corp}\n", production=True), env={})
    assert loaded.config.security.user_verifier.mode == "login"


def test_mode_none_stays_refused_in_production() -> None:
    """mode none with development off and a public public_url is still refused."""
    err = error(config("login: {provider: corp}\n", production=True))
    assert err.path == "security.user_verifier.mode" and "mode: login" in err.msg


def test_check_config_refuses_a_login_provider_without_openid(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """keyturn check-config exits 1 naming login.provider when it has no issuer."""
    path = tmp_path / "engine.yaml"
    path.write_text(config("login: {provider: plain}\n"))
    assert main(["check-config", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert "login.provider" in err and "OpenID" in err and "Traceback" not in err
