"""engine.providers.catalog: built-in templates, a config entry merged over its template, placeholders."""

from __future__ import annotations

import json
import pathlib
import textwrap

import pytest

from engine.errors import ConfigError, ProviderError
from engine.oauth.tokens import parse_token_answer
from engine.providers.catalog import load_template, merge, template_ids
from engine.providers.load import load_config, load_text

REQUIRED = [
    "asana",
    "atlassian",
    "auth0",
    "box",
    "clickup",
    "discord",
    "dropbox",
    "figma",
    "github",
    "gitlab",
    "google",
    "hubspot",
    "linear",
    "linkedin",
    "mailchimp",
    "microsoft",
    "miro",
    "notion",
    "okta",
    "pagerduty",
    "reddit",
    "salesforce",
    "slack",
    "spotify",
    "twitch",
    "x",
    "zendesk",
    "zoho",
    "zoom",
    "calendly",
    "airtable",
]
ENV = {
    "CUSTOM_CLIENT_ID": "cid",
    "CUSTOM_CLIENT_SECRET": "csecret",
    "CLIENT_ID": "cid",
    "CLIENT_SECRET": "cs",
}


def load(body: str):  # type: ignore[no-untyped-def]
    return load_text("api: {development: true}\n" + textwrap.dedent(body), source="engine.yaml", env=ENV)


@pytest.mark.parametrize("template_id", REQUIRED)
def test_every_builtin_template_loads(template_id: str) -> None:
    """Each required built-in template exists, names itself after its file and documents its source."""
    template = load_template(template_id)
    assert template.id == template_id and template.docs.startswith("https://")
    assert template_id in template_ids()


def test_at_least_thirty_templates() -> None:
    """The catalog ships at least 30 templates."""
    assert len(template_ids()) >= 30


def test_entry_merges_over_template() -> None:
    """A provider_id entry overrides an endpoint, adds a param and removes one with null."""
    loaded = load(
        """
        auth:
          providers:
            - id: gh
              provider_id: github
              client_id: a
              client_secret: b
              oauth2:
                authorization_request: {params: {allow_signup: "false", response_type: null}}
                user_info: {endpoint: "https://ghe.example.com/api/v3/user"}
        """
    )
    spec = loaded.providers["gh"].oauth2
    assert spec.authorization_request.endpoint == "https://github.com/login/oauth/authorize"
    assert dict(spec.authorization_request.params) == {"allow_signup": "false"}
    assert spec.user_info is not None and spec.user_info.endpoint == "https://ghe.example.com/api/v3/user"
    assert loaded.providers["gh"].template_id == "github"


def test_placeholders_filled_from_vars() -> None:
    """Microsoft's {tenant} defaults to common and follows vars; Okta's required domain must be given."""
    loaded = load(
        """
        auth:
          providers:
            - {id: ms, provider_id: microsoft, client_id: a, client_secret: b}
            - id: ms2
              provider_id: microsoft
              client_id: a
              client_secret: b
              vars: {tenant: contoso.onmicrosoft.com}
            - {id: okta, provider_id: okta, client_id: a, client_secret: b, vars: {domain: acme.okta.com}}
        """
    )
    assert "/common/" in (loaded.providers["ms"].oauth2.token_request.endpoint or "")
    assert "/contoso.onmicrosoft.com/" in (loaded.providers["ms2"].oauth2.token_request.endpoint or "")
    assert loaded.providers["okta"].oauth2.issuer == "https://acme.okta.com/oauth2/default"
    with pytest.raises(ConfigError) as info:
        load("auth:\n  providers:\n    - {id: okta, provider_id: okta, client_id: a, client_secret: b}\n")
    assert info.value.path.startswith("auth.providers[0].oauth2") and "vars.domain" in info.value.msg


def test_bad_vars() -> None:
    """An unknown variable lists the template's variables; a value that is not a host is refused."""
    with pytest.raises(ConfigError, match=r"has no variable 'tenantt'.*tenant"):
        load(
            "auth:\n  providers:\n    - {id: m, provider_id: microsoft, client_id: a, client_secret: b, "
            "vars: {tenantt: x}}\n"
        )
    with pytest.raises(ConfigError) as info:
        load(
            "auth:\n  providers:\n    - {id: o, provider_id: okta, client_id: a, client_secret: b, "
            "vars: {domain: 'evil.com/x?'}}\n"
        )
    assert info.value.path == "auth.providers[0].vars.domain"


def test_seed_custom_block_loads() -> None:
    """The custom-provider block from the seed article loads as written."""
    loaded = load(
        """
        auth:
          providers:
            - id: custom-oauth-provider
              enabled: true
              type: oauth2
              client_id: ${env:CUSTOM_CLIENT_ID}
              client_secret: ${env:CUSTOM_CLIENT_SECRET}
              oauth2:
                authorization_request:
                  endpoint: "https://provider.com/oauth/authorize"
                  params:
                    response_type: code
                    scope: "read write"
                token_request:
                  endpoint: "https://provider.com/oauth/token"
                  params:
                    grant_type: authorization_code
                user_info:
                  endpoint: "https://provider.com/oauth/userinfo"
        """
    )
    provider = loaded.providers["custom-oauth-provider"]
    assert provider.client_id == "cid" and provider.oauth2.pkce.enabled is True
    assert provider.oauth2.authorization_request.params["scope"] == "read write"


def test_arcade_spellings_and_custom_provider_id() -> None:
    """authorize_request/user_info_request are accepted; provider_id custom means the entry's own block."""
    loaded = load(
        """
        auth:
          providers:
            - id: secure-provider
              provider_id: custom
              client_id: ${env:CLIENT_ID}
              client_secret: ${env:CLIENT_SECRET}
              oauth2:
                pkce: {enabled: true, code_challenge_method: S256}
                authorize_request: {endpoint: "https://p.example/authorize"}
                token_request: {endpoint: "https://p.example/token"}
                user_info_request: {endpoint: "https://p.example/userinfo"}
        """
    )
    spec = loaded.providers["secure-provider"].oauth2
    assert spec.authorization_request.endpoint == "https://p.example/authorize"
    assert spec.user_info is not None and loaded.providers["secure-provider"].template_id is None


def test_custom_block_errors_name_the_key() -> None:
    """A missing token endpoint and a plain-http endpoint are errors at their key path."""
    with pytest.raises(ConfigError) as info:
        load(
            "auth:\n  providers:\n    - id: c\n      client_id: a\n      client_secret: b\n      oauth2:\n"
            "        authorization_request: {endpoint: 'https://p.example/a'}\n        token_request: {}\n"
        )
    assert info.value.path == "auth.providers[0].oauth2.token_request.endpoint"
    with pytest.raises(ConfigError) as info:
        load_text(
            "api: {public_url: 'http://127.0.0.1:9099'}\nsecurity: {root_keys: [{id: k, value: "
            "'AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8='}]}\nauth:\n  providers:\n    - id: c\n"
            "      client_id: a\n      client_secret: b\n      oauth2:\n"
            "        authorization_request: {endpoint: 'http://p.example/a'}\n"
            "        token_request: {endpoint: 'https://p.example/t'}\n",
            env={},
        )
    assert info.value.path == "auth.providers[0].oauth2.authorization_request.endpoint"


def test_resource_must_be_an_absolute_uri_without_fragment() -> None:
    """oauth2.resource (RFC 8707): kept when absolute; relative or with a fragment is an error at its key."""
    block = (
        "auth:\n  providers:\n    - id: c\n      client_id: a\n      client_secret: b\n      oauth2:\n"
        "        authorization_request: {endpoint: 'https://p.example/a'}\n"
        "        token_request: {endpoint: 'https://p.example/t'}\n        resource: '%s'\n"
    )
    assert (
        load(block % "https://mcp.example.com/mcp").providers["c"].oauth2.resource
        == "https://mcp.example.com/mcp"
    )
    for bad in ("/mcp", "https://mcp.example.com/mcp#x"):
        with pytest.raises(ConfigError) as info:
            load(block % bad)
        assert info.value.path == "auth.providers[0].oauth2.resource" and "RFC 8707" in str(info.value)


def test_merge_semantics() -> None:
    """merge: mappings merge, other values replace, None removes."""
    assert merge({"a": {"x": 1, "y": 2}, "b": [1]}, {"a": {"y": None, "z": 3}, "b": [2]}) == {
        "a": {"x": 1, "z": 3},
        "b": [2],
    }


def test_cli_providers(capsys: pytest.CaptureFixture[str]) -> None:
    """keyturn providers list shows every template; show prints one; an unknown id exits 1."""
    from engine.cli.main import main

    assert main(["providers", "list"]) == 0
    out = capsys.readouterr().out
    assert all(t in out for t in ("slack", "salesforce", "zoom"))
    assert main(["providers", "show", "slack"]) == 0
    assert '"scope_param": "user_scope"' in capsys.readouterr().out
    assert main(["providers", "show", "slak"]) == 1
    assert "did you mean 'slack'" in capsys.readouterr().err


def test_cli_show_github_and_unknown(capsys: pytest.CaptureFixture[str]) -> None:
    """keyturn providers show github prints its endpoints as JSON; show nope exits 1 on stderr."""
    from engine.cli.main import main

    assert main(["providers", "show", "github"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["id"] == "github"
    assert shown["oauth2"]["token_request"]["endpoint"] == "https://github.com/login/oauth/access_token"
    assert main(["providers", "show", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "nope" in captured.err


def _provider(body: str, pid: str):  # type: ignore[no-untyped-def]
    return load(body).providers[pid]


def test_slack_token_and_refresh_answers_parse() -> None:
    """Slack's nested user token, its top-level refreshed token and ok: false read through the template."""
    slack = _provider(
        "auth:\n  providers:\n    - {id: s, provider_id: slack, client_id: a, client_secret: b}\n", "s"
    )
    spec = slack.oauth2
    assert spec.scope_param == "user_scope" and spec.user_info is not None
    first = {
        "ok": True,
        "team": {"id": "T1", "name": "Acme"},
        "authed_user": {
            "id": "U1",
            "scope": "search:read,chat:write",
            "access_token": "xoxp-user",
            "token_type": "user",
            "refresh_token": "xoxe-1-r",
            "expires_in": 43200,
        },
    }
    tokens = parse_token_answer(
        spec, spec.token_request, status=200, content_type="application/json", body=json.dumps(first).encode()
    )
    assert (tokens.access_token, tokens.subject, tokens.refresh_token) == ("xoxp-user", "U1", "xoxe-1-r")
    assert tokens.scopes == ("search:read", "chat:write") and tokens.metadata["team_id"] == "T1"
    refreshed = {
        "ok": True,
        "access_token": "xoxe.xoxp-new",
        "refresh_token": "xoxe-1-r2",
        "expires_in": 43200,
    }
    assert spec.refresh_request is not None
    again = parse_token_answer(
        spec,
        spec.refresh_request,
        status=200,
        content_type="application/json",
        body=json.dumps(refreshed).encode(),
    )
    assert (again.access_token, again.refresh_token, again.expires_in) == (
        "xoxe.xoxp-new",
        "xoxe-1-r2",
        43200,
    )
    with pytest.raises(ProviderError):
        parse_token_answer(
            spec,
            spec.token_request,
            status=200,
            content_type="application/json",
            body=b'{"ok": false, "error": "invalid_code"}',
        )


def test_salesforce_domain_default_and_instance_url_kept() -> None:
    """Salesforce defaults to login.salesforce.com, follows vars.domain and keeps instance_url."""
    loaded = load(
        """
        auth:
          providers:
            - {id: sf, provider_id: salesforce, client_id: a, client_secret: b}
            - id: sb
              provider_id: salesforce
              client_id: a
              client_secret: b
              vars: {domain: test.salesforce.com}
        """
    )
    spec = loaded.providers["sf"].oauth2
    assert spec.token_request.endpoint == "https://login.salesforce.com/services/oauth2/token"
    assert loaded.providers["sb"].oauth2.authorization_request.endpoint == (
        "https://test.salesforce.com/services/oauth2/authorize"
    )
    answer = {
        "access_token": "00D!x",
        "instance_url": "https://acme.my.salesforce.com",
        "id": "https://x/id/1",
    }
    tokens = parse_token_answer(
        spec,
        spec.token_request,
        status=200,
        content_type="application/json",
        body=json.dumps(answer).encode(),
    )
    assert tokens.metadata["instance_url"] == "https://acme.my.salesforce.com" and tokens.expires_in is None


@pytest.mark.parametrize("template_id", REQUIRED)
def test_template_user_info_is_complete(template_id: str) -> None:
    """A template reading user info says how (GET/POST) and where the stable id is; endpoints are https."""
    template = load_template(template_id)
    block = template.oauth2
    info = block.get("user_info")
    if info is not None:
        assert info.get("method") in ("GET", "POST") and block.get("user_id_path")
    for name in (
        "authorization_request",
        "token_request",
        "refresh_request",
        "revocation_request",
        "user_info",
    ):
        endpoint = (block.get(name) or {}).get("endpoint")
        assert endpoint is None or endpoint.startswith("https://"), (name, endpoint)


def test_only_the_code_flow() -> None:
    """response_type other than code (the implicit grant) is refused with its key path."""
    with pytest.raises(ConfigError) as info:
        load(
            "auth:\n  providers:\n    - id: c\n      client_id: a\n      client_secret: b\n      oauth2:\n"
            "        authorization_request:\n"
            "          {endpoint: 'https://p.example/a', params: {response_type: token}}\n"
            "        token_request: {endpoint: 'https://p.example/t'}\n"
        )
    assert info.value.path == "auth.providers[0].oauth2.authorization_request.params.response_type"


CUSTOM_OIDC = """
auth:
  providers:
    - id: corp
      type: oauth2
      client_id: cid
      client_secret: cs
      oauth2:
        issuer: "https://id.example.com"
{extra}
"""


def test_issuer_alone_means_discovery() -> None:
    """A custom block with only issuer: discovery is implied and the endpoints are left to it."""
    spec = load(CUSTOM_OIDC.format(extra="")).providers["corp"].oauth2
    assert spec.discovery is True
    assert spec.authorization_request.endpoint is None and spec.token_request.endpoint is None


def test_issuer_with_endpoints_still_discovers_keys() -> None:
    """DESIGN.md's custom block (endpoints and issuer, no discovery key) discovers jwks_uri."""
    extra = (
        '        authorization_request: {endpoint: "https://id.example.com/authorize"}\n'
        '        token_request: {endpoint: "https://id.example.com/token"}\n'
    )
    spec = load(CUSTOM_OIDC.format(extra=extra)).providers["corp"].oauth2
    assert spec.discovery is True and spec.jwks_uri is None


def test_issuer_without_discovery_needs_jwks_uri() -> None:
    """discovery: false with an issuer and no jwks_uri could never check an id_token: a config error."""
    extra = (
        "        discovery: false\n"
        '        authorization_request: {endpoint: "https://id.example.com/authorize"}\n'
        '        token_request: {endpoint: "https://id.example.com/token"}\n'
    )
    with pytest.raises(ConfigError) as info:
        load(CUSTOM_OIDC.format(extra=extra))
    assert info.value.path == "auth.providers[0].oauth2.jwks_uri"
    assert "no id_token" in info.value.msg and info.value.line is not None
    ok = load(CUSTOM_OIDC.format(extra=extra + '        jwks_uri: "https://id.example.com/jwks"\n'))
    assert ok.providers["corp"].oauth2.discovery is False


def test_issuer_without_discovery_needs_its_endpoints() -> None:
    """discovery: false leaves no way to find the authorization endpoint: it is required."""
    extra = '        discovery: false\n        jwks_uri: "https://id.example.com/jwks"\n'
    with pytest.raises(ConfigError) as info:
        load(CUSTOM_OIDC.format(extra=extra))
    assert info.value.path == "auth.providers[0].oauth2.authorization_request.endpoint"


def test_jwks_uri_needs_an_issuer() -> None:
    """A key set without an issuer cannot check iss: the issuer is required."""
    body = CUSTOM_OIDC.replace('        issuer: "https://id.example.com"\n', "").format(
        extra='        authorization_request: {endpoint: "https://id.example.com/a"}\n'
        '        token_request: {endpoint: "https://id.example.com/t"}\n'
        '        jwks_uri: "https://id.example.com/jwks"\n'
    )
    with pytest.raises(ConfigError) as info:
        load(body)
    assert info.value.path == "auth.providers[0].oauth2.issuer"


@pytest.mark.parametrize("template_id", ["google", "linkedin", "twitch"])
def test_templates_with_fixed_keys_do_not_discover(template_id: str) -> None:
    """Templates that name their endpoints and jwks_uri keep discovery off (no metadata fetch)."""
    loaded = load(
        f"auth:\n  providers:\n    - {{id: p, provider_id: {template_id}, client_id: a, client_secret: b}}\n"
    )
    spec = loaded.providers["p"].oauth2
    assert spec.issuer and spec.jwks_uri and spec.discovery is False


def test_client_secret_path_is_read_beside_engine_yaml(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative client_secret_path is found next to engine.yaml, whatever the working directory."""
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "gh.txt").write_text("from-the-file\n")
    config = tmp_path / "engine.yaml"
    config.write_text(
        "api: {development: true}\nauth:\n  providers:\n"
        "    - {id: gh, provider_id: github, client_id: a, client_secret_path: secrets/gh.txt}\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_config(config, env={})
    assert loaded.providers["gh"].client_secret == "from-the-file"
