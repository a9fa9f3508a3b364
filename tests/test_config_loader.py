"""engine.config.loader: engine.yaml parsing, substitution, validation errors with file, line and key path."""

from __future__ import annotations

import base64
import re
import textwrap
from pathlib import Path

import pytest

from engine.errors import ConfigError
from engine.providers.load import load_config, load_text

KEY = base64.b64encode(bytes(range(32))).decode()


def load(text: str, env: dict[str, str] | None = None, base_dir: Path | None = None):  # type: ignore[no-untyped-def]
    return load_text(textwrap.dedent(text), source="engine.yaml", env=env or {}, base_dir=base_dir)


def error(text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, env)
    return info.value


def test_empty_file_is_development_defaults_only_when_development() -> None:
    """An empty file without development mode fails because no root key is configured."""
    err = error("")
    assert err.path == "security.root_keys"
    assert "root key is required" in err.msg


def test_development_defaults() -> None:
    """A development config gets loopback, a public_url from host and port, and SQLite beside the file."""
    loaded = load("api: {development: true}\n", base_dir=Path("/srv/kt"))
    assert loaded.config.api.public_url == "http://127.0.0.1:9099"
    assert loaded.config.storage.url == "sqlite+aiosqlite:////srv/kt/keyturn.db"
    assert loaded.providers == {}


def test_env_substitution() -> None:
    """${env:VAR} is replaced by the variable's value."""
    loaded = load("api: {development: true, public_url: '${env:PUB}'}\n", env={"PUB": "http://127.0.0.1:1"})
    assert loaded.config.api.public_url == "http://127.0.0.1:1"


def test_env_default_used_when_unset() -> None:
    """${env:VAR:-default} falls back to the default when VAR is unset or empty."""
    text = "api: {development: true, host: '${env:HOST:-127.0.0.2}'}\n"
    assert load(text).config.api.host == "127.0.0.2"
    assert load(text, env={"HOST": ""}).config.api.host == "127.0.0.2"
    assert load(text, env={"HOST": "::1"}).config.api.host == "::1"


def test_angle_alias() -> None:
    """$<env:VAR> is read like ${env:VAR}."""
    loaded = load("api: {development: true, host: '$<env:H>'}\n", env={"H": "127.0.0.9"})
    assert loaded.config.api.host == "127.0.0.9"


def test_file_substitution(tmp_path: Path) -> None:
    """${file:/path} reads the file, dropping one trailing newline; relative paths start at the config."""
    (tmp_path / "key").write_text(KEY + "\n")
    text = f"security: {{root_keys: [{{id: k1, default: true, value: '${{file:{tmp_path}/key}}'}}]}}\n"
    loaded = load(text)
    assert loaded.config.security.root_keys[0].value == KEY
    rel = load("security: {root_keys: [{id: k1, value: '${file:key}'}]}\n", base_dir=tmp_path)
    assert rel.config.security.root_keys[0].value == KEY


def test_dollar_dollar_is_literal() -> None:
    """$$ writes one literal dollar sign."""
    loaded = load("api: {development: true, branding: {name: 'Pay $$5'}}\n")
    assert loaded.config.api.branding.name == "Pay $5"


def test_unset_variable_names_variable_and_path_not_value() -> None:
    """An unset variable is an error naming the variable, the key path and the line."""
    err = error(
        """\
        api:
          development: true
        auth:
          providers:
            - id: gh
              provider_id: github
              client_id: abc
              client_secret: ${env:GH_SECRET}
        """
    )
    assert "GH_SECRET is not set" in err.msg
    assert err.path == "auth.providers[0].client_secret"
    assert err.line == 8
    assert str(err).startswith("engine.yaml:8: auth.providers[0].client_secret:")


def test_missing_file_substitution() -> None:
    """A ${file:} that cannot be read names the file and the key path."""
    err = error("api: {development: true, host: '${file:/nonexistent/x}'}\n")
    assert err.path == "api.host"
    assert "/nonexistent/x" in err.msg


def test_unknown_substitution_kind() -> None:
    """${vault:x} is rejected with the forms that are accepted."""
    err = error("api: {development: true, host: '${vault:x}'}\n")
    assert "unknown substitution" in err.msg and "${env:VAR}" in err.msg


def test_unknown_key_did_you_mean() -> None:
    """An unknown key is an error with a suggestion, its path and its line."""
    err = error("api:\n  development: true\n  pubic_url: http://127.0.0.1:1\n")
    assert err.path == "api.pubic_url"
    assert err.line == 3
    assert "did you mean 'public_url'" in err.msg


def test_unknown_section() -> None:
    """An unknown top-level section is an error; Arcade's llm section is a warning."""
    assert error("api: {development: true}\nstorge: {}\n").path == "storge"
    loaded = load("api: {development: true}\nllm: {models: []}\n")
    assert any("llm" in w for w in loaded.warnings)


def test_wrong_type() -> None:
    """A value of the wrong type names what was expected and what was found."""
    err = error("api: {development: true, port: many}\n")
    assert err.path == "api.port"
    assert "whole number" in err.msg


def test_duration_parsing() -> None:
    """Durations read 30s, 5m, 1h and bare seconds; a bad one is an error with its path."""
    loaded = load(
        "api: {development: true}\nlifecycle: {refresh_interval: 45s, refresh_lead: 5m, lease_ttl: 1h}\n"
    )
    assert loaded.config.lifecycle.refresh_interval == 45
    assert loaded.config.lifecycle.refresh_lead == 300
    assert loaded.config.lifecycle.lease_ttl == 3600
    err = error("api: {development: true}\nlifecycle: {refresh_lead: soon}\n")
    assert err.path == "lifecycle.refresh_lead" and err.line == 2


def test_literal_choice_suggests() -> None:
    """A value outside a fixed set lists the choices and suggests the closest."""
    err = error("api: {development: true}\nsecurity: {token_exposure: apii}\n")
    assert err.path == "security.token_exposure"
    assert "did you mean 'api'" in err.msg


def test_yaml_syntax_error_has_line() -> None:
    """Broken YAML is a ConfigError with the line, not a traceback."""
    err = error("api:\n  development: true\n  host: [unclosed\n")
    assert err.line is not None and err.line >= 3
    assert "invalid YAML" in err.msg


def test_duplicate_key() -> None:
    """A key given twice in one mapping is an error naming the key and line."""
    err = error("api:\n  port: 1\n  port: 2\n")
    assert "duplicate key 'port'" in err.msg and err.line == 3


def test_top_level_must_be_mapping() -> None:
    """A list at the top level is rejected."""
    assert "top level" in error("- a\n- b\n").msg


def test_root_key_checks() -> None:
    """Root keys must be base64 of 32 bytes; errors never show the value."""
    bad = base64.b64encode(b"short").decode()
    err = error(f"security: {{root_keys: [{{id: k1, default: true, value: '{bad}'}}]}}\n")
    assert err.path == "security.root_keys[0].value"
    assert "32 bytes" in err.msg and bad not in str(err)
    err = error("security: {root_keys: [{id: k1, value: 'not base64!!'}]}\n")
    assert "base64" in err.msg and "not base64!!" not in str(err)
    err = error(
        f"security: {{root_keys: [{{id: a, default: true, value: '{KEY}'}}, "
        f"{{id: b, default: true, value: '{KEY}'}}]}}\n"
    )
    assert "only one key" in err.msg


def test_user_verifier_none_needs_development_or_loopback() -> None:
    """user_verifier none is refused with a public https URL outside development mode."""
    err = error(
        f"api: {{public_url: 'https://keys.example.com'}}\n"
        f"security: {{root_keys: [{{id: k1, value: '{KEY}'}}]}}\n"
    )
    assert err.path == "security.user_verifier.mode"
    ok = load(
        f"api: {{public_url: 'https://keys.example.com'}}\n"
        f"security: {{root_keys: [{{id: k1, value: '{KEY}'}}], "
        "user_verifier: {mode: custom, url: 'https://app.example.com/verify'}}\n"
    )
    assert ok.config.security.user_verifier.mode == "custom"


def test_custom_verifier_needs_url() -> None:
    """user_verifier custom without url is an error at security.user_verifier.url."""
    err = error("api: {development: true}\nsecurity: {user_verifier: {mode: custom}}\n")
    assert err.path == "security.user_verifier.url"


def test_storage_spellings(tmp_path: Path) -> None:
    """storage.url, Arcade's storage.sqlite.connection_string and storage.postgres all resolve to a URL."""
    dev = "api: {development: true}\n"
    assert load(dev + "storage: {sqlite: {connection_string: /tmp/x.db}}\n").config.storage.url == (
        "sqlite+aiosqlite:////tmp/x.db"
    )
    pg = load(dev + "storage: {postgres: {host: db, user: kt, password: 'p@ss', db: keys}}\n")
    assert pg.config.storage.url == "postgresql+asyncpg://kt:p%40ss@db:5432/keys"
    assert (
        load(dev + "storage: {url: 'postgresql://u@h/d'}\n").config.storage.url
        == "postgresql+asyncpg://u@h/d"
    )
    err = error(dev + "storage: {url: 'mysql://x'}\n")
    assert err.path == "storage.url"
    err = error(dev + "storage: {url: 'sqlite+aiosqlite:///a.db', sqlite: {connection_string: b.db}}\n")
    assert "one of" in err.msg


def test_arcade_worker_spelling() -> None:
    """Arcade's tools.directors[].workers[].http block loads."""
    loaded = load(
        "api: {development: true}\ntools:\n  directors:\n    - id: default\n      workers:\n"
        "        - id: w1\n          http: {uri: 'http://127.0.0.1:8002', secret: s3cret}\n"
    )
    worker = loaded.config.tools.directors[0].workers[0]
    assert worker.http.uri == "http://127.0.0.1:8002"


def test_load_config_file_errors(tmp_path: Path) -> None:
    """A missing or non-UTF-8 file is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(bad)


def test_shipped_engine_yaml_loads() -> None:
    """The repository's engine.yaml loads with no environment set."""
    root = Path(__file__).resolve().parent.parent
    loaded = load_config(root / "engine.yaml", env={})
    assert loaded.config.api.development is True
    assert loaded.config.api.host == "127.0.0.1"


def test_mcp_auth_none_only_on_loopback() -> None:
    """mcp.auth none is refused on a public bind outside development mode."""
    key = KEY
    err = error(
        f"api: {{host: 0.0.0.0, public_url: 'https://k.example.com'}}\n"
        f"security: {{root_keys: [{{id: k, value: '{key}'}}], user_verifier: {{mode: custom, url: 'https://a.example/v'}}}}\n"
        "mcp: {auth: none, default_user: alice}\n"
    )
    assert err.path == "mcp.auth"
    ok = load(
        "api: {development: false, host: 127.0.0.1}\n"
        f"security: {{root_keys: [{{id: k, value: '{key}'}}]}}\nmcp: {{auth: none, default_user: alice}}\n"
    )
    assert ok.config.mcp.auth == "none"


FIXTURES = Path(__file__).resolve().parent / "fixtures"


def arcade_env(**overrides: str) -> dict[str, str]:
    """Every variable Arcade's example engine.yaml names, set as a developer's .env would."""
    text = (FIXTURES / "arcade_engine_config_2.0.yaml").read_text()
    env = {name: f"{name.lower()}-value" for name in re.findall(r"\$\{env:([A-Z0-9_]+)\}", text)}
    env.update(
        API_DEVELOPMENT="true",
        ARCADE_API_HOST="127.0.0.1",
        ARCADE_API_PORT="9099",
        ROOT_KEY_1=KEY,
        POSTGRES_DATA_PATH="/var/lib/arcade/postgres-data",
        TELEMETRY_LOGGING_LEVEL="warn",
        TELEMETRY_LOGGING_ENCODING="console",
        ARCADE_WORKER_URI="http://127.0.0.1:8002",
    )
    env.update(overrides)
    return env


def test_arcade_example_engine_yaml_loads_unchanged(tmp_path: Path) -> None:
    """Arcade's own example (ArcadeAI/schemas engine/config 2.0) loads as written, with its meaning."""
    config_file = tmp_path / "engine.yaml"
    config_file.write_bytes((FIXTURES / "arcade_engine_config_2.0.yaml").read_bytes())
    loaded = load_config(config_file, env=arcade_env())
    config = loaded.config
    assert config.api.development is True and config.api.port == 9099
    assert [k.id for k in config.security.root_keys] == ["key1"]
    assert config.logging.level == "warning" and config.logging.format == "console"
    # no embedded PostgreSQL: SQLite beside engine.yaml, said in a warning, Arcade's data folder untouched
    assert config.storage.url == f"sqlite+aiosqlite:///{tmp_path}/keyturn.db"
    assert any("storage.postgres.data_path" in w and "SQLite" in w for w in loaded.warnings)
    assert any(w.startswith("llm:") for w in loaded.warnings)
    assert not any("$schema" in w for w in loaded.warnings)
    assert loaded.providers == {}  # every provider in the example is enabled: false
    worker = config.tools.directors[0].workers[0]
    assert worker.http.uri == "http://127.0.0.1:8002" and worker.http.retry == 3


def test_telemetry_logging_applies_unless_logging_says_otherwise() -> None:
    """telemetry.logging.{level, encoding} set the log level and format; keys under logging: win."""
    dev = "api: {development: true}\n"
    loaded = load(dev + "telemetry: {logging: {level: debug, encoding: json}, environment: prod}\n")
    assert (loaded.config.logging.level, loaded.config.logging.format) == ("debug", "json")
    both = load(dev + "telemetry: {logging: {level: error, encoding: json}}\nlogging: {level: info}\n")
    assert (both.config.logging.level, both.config.logging.format) == ("info", "json")
    assert load(dev).config.logging.format == "auto"
    err = error(dev + "telemetry: {logging: {encoding: xml}}\n")
    assert err.path == "telemetry.logging.encoding"
    other = load(dev + "telemetry: {exporter: {otlp: {endpoint: 'http://c:4318'}}}\n")
    assert any(w.startswith("telemetry.exporter:") for w in other.warnings)


def test_postgres_data_path_and_host_are_exclusive() -> None:
    """storage.postgres gives data_path (embedded) or host (a server), not both."""
    err = error("api: {development: true}\nstorage: {postgres: {data_path: /d, host: db}}\n")
    assert err.path == "storage.postgres.data_path" and "not both" in err.msg


def seed_003(api: str = "api: {development: true, public_url: 'https://yourdomain.com'}\n") -> str:
    return api + (FIXTURES / "seed003_security.yaml").read_text()


def test_seed_003_security_block() -> None:
    """Seed 003's security block loads with its meaning: root keys, token exposure, limits, callback URL."""
    from engine.config.compat import encryption_key_id, redirect_uri

    loaded = load(seed_003(), env={"ENCRYPTION_KEY": KEY})
    security = loaded.config.security
    assert [(k.id, k.value, k.default) for k in security.root_keys] == [(encryption_key_id(KEY), KEY, True)]
    assert security.api_keys == ()  # an encryption key never becomes a bearer key
    assert KEY not in encryption_key_id(KEY)
    assert security.token_exposure == "never"
    assert loaded.config.audit.sinks  # audit on
    assert (security.rate_limiting.max_auth_attempts, security.rate_limiting.window_minutes) == (5, 15)
    assert redirect_uri(loaded.config) == "https://yourdomain.com/api/oauth/callback"


def test_seed_003_encryption_key_is_checked_like_a_root_key() -> None:
    """An encryption key that is not base64 of 32 bytes is refused at its path, without its value."""
    with pytest.raises(ConfigError) as info:
        load(seed_003(), env={"ENCRYPTION_KEY": "not-a-real-key-but-secret"})
    assert info.value.path == "security.encryption_keys[0]" and info.value.line == 5  # the list item
    assert "not-a-real-key-but-secret" not in str(info.value)


@pytest.mark.parametrize(
    ("old", "new", "path", "reason"),
    [
        ("pkce_enabled: true", "pkce_enabled: false", "security.oauth.pkce_enabled", "PKCE"),
        ("state_validation: true", "state_validation: false", "security.oauth.state_validation", "state"),
        (
            "audit_logging: enabled",
            "audit_logging: disabled",
            "security.authentication.audit_logging",
            "audits",
        ),
        (
            "isolation_mode: strict",
            "isolation_mode: relaxed",
            "security.authentication.isolation_mode",
            "never",
        ),
    ],
)
def test_seed_003_settings_keyturn_cannot_honour_are_refused(
    old: str, new: str, path: str, reason: str
) -> None:
    """PKCE and state are always on, audit cannot be off, isolation is strict: anything else is refused."""
    with pytest.raises(ConfigError) as info:
        load(seed_003().replace(old, new), env={"ENCRYPTION_KEY": KEY})
    assert info.value.path == path and reason in info.value.msg


def test_seed_003_redirect_urls_must_agree_with_public_url() -> None:
    """A redirect URL on another origin or path than Keyturn's callback is a config error naming the fix."""
    with pytest.raises(ConfigError) as info:
        load(
            seed_003("api: {development: true, public_url: 'https://keys.example.org'}\n"),
            {"ENCRYPTION_KEY": KEY},
        )
    assert info.value.path == "security.oauth.redirect_urls[0]"
    assert "https://keys.example.org/v1/oauth/callback" in info.value.msg
    text = seed_003().replace("/api/oauth/callback", "/oauth2/cb")
    with pytest.raises(ConfigError, match="not a callback Keyturn serves"):
        load(text, {"ENCRYPTION_KEY": KEY})
    native = load(seed_003().replace("/api/oauth/callback", "/v1/oauth/callback"), {"ENCRYPTION_KEY": KEY})
    assert native.config.security.oauth.redirect_urls == ("https://yourdomain.com/v1/oauth/callback",)


def test_encryption_keys_and_root_keys_are_exclusive() -> None:
    """root_keys and encryption_keys together are refused: one list of root keys."""
    err = error(
        "api: {development: true}\n"
        f"security: {{encryption_keys: ['{KEY}'], root_keys: [{{id: a, value: '{KEY}'}}]}}\n"
    )
    assert err.path == "security.encryption_keys"


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("security: {master_keys: [x]}", "root_keys"),  # difflib alone says api_keys
        ("security: {encryption_key: [x]}", "encryption_keys"),
        ("security: {api_key: x}", "api_keys"),
        ("security: {root_key: x}", "root_keys"),
        ("auth: {providers: [{id: a, provider_id: github, client_id: c, client_secrt: s}]}", "client_secret"),
    ],
)
def test_did_you_mean_stays_within_a_kind_of_secret(text: str, hint: str) -> None:
    """A hint for a secret-looking key names a key of the same kind of secret only."""
    err = error("api: {development: true}\n" + text + "\n")
    assert f"did you mean {hint!r}" in err.msg


@pytest.mark.parametrize("word", ["keys", "aes_keys", "sealing_keys", "data_keys", "cipher_keys"])
def test_no_hint_across_kinds_of_secret(word: str) -> None:
    """A key that does not say it is an API key is never told to be api_keys (difflib alone says so)."""
    err = error(f"api: {{development: true}}\nsecurity: {{{word}: [x]}}\n")
    assert err.path == f"security.{word}" and "api_keys" not in err.msg


def test_relative_audit_file_is_beside_engine_yaml(tmp_path: Path) -> None:
    """A relative audit.file is read from engine.yaml's folder, not the working directory; absolute stays."""
    text = "api: {development: true}\naudit: {sinks: [file], file: %s}\n"
    parsed = load(text % "logs/audit.jsonl", base_dir=tmp_path)
    assert parsed.config.audit.file == str(tmp_path / "logs/audit.jsonl")
    assert (
        load(text % "/var/log/keyturn.jsonl", base_dir=tmp_path).config.audit.file == "/var/log/keyturn.jsonl"
    )


def test_api_keys_mix_plain_strings_and_tool_limited_entries() -> None:
    """security.api_keys takes plain keys and {key, tools} entries side by side; a typo is named."""
    from engine.config.model import ApiKeyEntry

    config = load(
        "api: {development: true}\nsecurity:\n  api_keys:\n    - plain-${env:A}\n"
        "    - {key: '${env:B}', tools: ['Gmail.*', '*.Delete*']}\n",
        env={"A": "one", "B": "two"},
    ).config
    assert config.security.api_keys == ("plain-one", ApiKeyEntry(key="two", tools=("Gmail.*", "*.Delete*")))
    err = error("api: {development: true}\nsecurity: {api_keys: [{key: k, tool: ['Gmail.*']}]}\n")
    assert err.path == "security.api_keys[0].tool" and "did you mean 'tools'" in err.msg


def test_max_login_starts_must_be_positive() -> None:
    """security.rate_limiting.max_login_starts defaults to 30 and below 1 is an error naming the key."""
    assert load("api: {development: true}\n").config.security.rate_limiting.max_login_starts == 30
    err = error("api: {development: true}\nsecurity:\n  rate_limiting: {max_login_starts: 0}\n")
    assert err.path == "security.rate_limiting.max_login_starts" and "at least 1" in err.msg


@pytest.mark.parametrize(
    "key", ["max_auth_attempts", "max_api_key_failures", "window_minutes", "max_login_starts"]
)
@pytest.mark.parametrize("value", [0, -1])
def test_rate_limit_numbers_must_be_positive(key: str, value: int) -> None:
    """Every security.rate_limiting count and window below 1 is an error naming its key path and line."""
    err = error(f"api: {{development: true}}\nsecurity:\n  rate_limiting:\n    {key}: {value}\n")
    assert err.path == f"security.rate_limiting.{key}"
    assert f"at least 1, got {value}" in err.msg and err.line == 4


def test_rate_limit_enabled_false_is_not_a_number() -> None:
    """security.rate_limiting.enabled: false still loads (a bool is not checked as a count)."""
    assert (
        load(
            "api: {development: true}\nsecurity: {rate_limiting: {enabled: false}}\n"
        ).config.security.rate_limiting.enabled
        is False
    )


def test_arcade_api_server_keys_load_with_their_meaning_or_a_warning() -> None:
    """Arcade's api.{read,write,idle}_timeout, max_request_body_size and rate_limit load (never refused):
    idle_timeout and max_request_body_size apply; the others each give a warning naming the key."""
    loaded = load(
        """\
        api:
          development: true
          read_timeout: 30s
          write_timeout: 1m
          idle_timeout: 1m30s
          max_request_body_size: 4194304
          rate_limit: {noop: {}}
        """
    )
    api = loaded.config.api
    assert api.idle_timeout == 90 and api.max_body_bytes == 4194304
    assert api.read_timeout == 30 and api.write_timeout == 60
    for key in ("api.read_timeout", "api.write_timeout"):
        [warning] = [w for w in loaded.warnings if w.startswith(key + ":")]
        assert "not applied" in warning
    assert any(w.startswith("api.rate_limit:") and "ignored" in w for w in loaded.warnings)
    redis = "api: {development: true, rate_limit: {redis: {addr: 'localhost:6379', limit: 10}}}\n"
    assert any(w.startswith("api.rate_limit:") for w in load(redis).warnings)
    plain = load("api: {development: true}\n")
    assert plain.config.api.idle_timeout == 75 and plain.config.api.max_body_bytes == 1_048_576
    assert not any(w.startswith("api.") for w in plain.warnings)


def test_durations_take_go_compound_form_and_idle_timeout_is_positive() -> None:
    """Durations accept Go's compound spelling (1h15m, 1m30s, 500ms); api.idle_timeout 0 is an error."""
    text = "api: {development: true, idle_timeout: %s}\n"
    for written, seconds in (("1h15m", 4500), ("1m30s", 90), ("500ms", 0.5), ("2s500ms", 2.5)):
        assert load(text % written).config.api.idle_timeout == pytest.approx(seconds)
    err = error(text % "0s")
    assert err.path == "api.idle_timeout" and "more than 0" in err.msg
    assert error(text % "1m30").path == "api.idle_timeout"


def test_event_loop_is_checked() -> None:
    """api.event_loop is auto (default), asyncio or uvloop; anything else is refused naming the key."""
    assert load("api: {development: true}\n").config.api.event_loop == "auto"
    assert load("api: {development: true, event_loop: asyncio}\n").config.api.event_loop == "asyncio"
    err = error("api: {development: true, event_loop: trio}\n")
    assert err.path == "api.event_loop" and "'auto', 'asyncio', 'uvloop'" in err.msg


def test_event_loop_uvloop_refused_when_it_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """api.event_loop: uvloop without uvloop importable is a config error naming the key, not a crash."""
    from engine.config import loader

    monkeypatch.setattr(loader, "uvloop_available", lambda: False)
    err = error("api: {development: true, event_loop: uvloop}\n")
    assert err.path == "api.event_loop" and "uvloop is not installed" in err.msg
    assert load("api: {development: true}\n").config.api.event_loop == "auto"  # auto falls back
