"""engine.providers.load: engine.yaml with its providers resolved, and what names a provider checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config.loader import parse_text
from engine.errors import ConfigError
from engine.providers.load import load_config, load_text

GITHUB = "auth: {providers: [{id: gh, provider_id: github, client_id: c, client_secret: s}]}\n"


def test_providers_resolved_over_the_checked_config(tmp_path: Path) -> None:
    """load_config reads the file, keeps config's checks and warnings, and resolves each enabled provider."""
    path = tmp_path / "engine.yaml"
    path.write_text("api: {development: true}\nllm: {}\n" + GITHUB)
    loaded = load_config(path, env={})
    assert list(loaded.providers) == ["gh"] and loaded.providers["gh"].client_id == "c"
    assert loaded.source == str(path) and loaded.base_dir == tmp_path.resolve()
    assert any("llm" in w for w in loaded.warnings)
    parsed = parse_text("api: {development: true}\n" + GITHUB, env={})
    assert not hasattr(parsed, "providers")  # config alone knows no providers
    assert parsed.config.auth.providers[0].provider_id == "github"


def test_mcp_server_must_name_a_provider() -> None:
    """mcp.servers[].requires_auth.provider must be an enabled provider id."""
    with pytest.raises(ConfigError) as info:
        load_text(
            "api: {development: true}\nmcp: {servers: [{id: gh, url: 'http://127.0.0.1:1/mcp', "
            "requires_auth: {provider: github}}]}\n",
            env={},
        )
    assert info.value.path == "mcp.servers[0].requires_auth.provider"
    named = load_text(
        "api: {development: true}\n"
        + GITHUB
        + "mcp: {servers: [{id: s, url: 'http://127.0.0.1:1/mcp', requires_auth: {provider: gh}}]}\n",
        env={},
    )
    assert named.config.mcp.servers[0].requires_auth.provider == "gh"
