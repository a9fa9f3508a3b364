"""``engine.yaml`` as the engine runs it: the checked config with every enabled provider resolved.

:mod:`engine.config.loader` reads and checks the file; each ``auth.providers[]`` entry is then merged
over its template here (:mod:`engine.providers.catalog`), and what names a provider is checked
against the result (``mcp.servers[].requires_auth``; ``login:`` in :mod:`engine.providers.login`).
Providers depend on config, never the reverse.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from engine.config.governance import check_governance
from engine.config.loader import ParsedConfig, parse_text, read_config_file, section
from engine.config.model import Config
from engine.providers.catalog import resolve_providers
from engine.providers.login import check_login
from engine.providers.model import Provider


@dataclasses.dataclass(frozen=True)
class LoadedConfig:
    config: Config
    providers: Mapping[str, Provider]
    source: str  # the file read, or "<defaults>"
    warnings: tuple[str, ...] = ()
    base_dir: Path = dataclasses.field(default_factory=Path.cwd)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    listen: tuple[str | None, int | None] = (None, None),
) -> LoadedConfig:
    """Read and check a config file (``None``: the embedded development defaults) and its providers.

    ``listen`` overrides ``api.host`` and ``api.port`` (``keyturn serve --host/--port``) before the
    checks, so a derived ``api.public_url`` follows them.
    """
    text, source, base_dir = read_config_file(path)
    return load_text(text, source=source, base_dir=base_dir, env=env, listen=listen)


def load_text(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    listen: tuple[str | None, int | None] = (None, None),
) -> LoadedConfig:
    """:func:`load_config` of text (tests, ``keyturn check-config``)."""
    parsed = parse_text(text, source=source, base_dir=base_dir, env=env, listen=listen)
    config, ctx = parsed.config, parsed.ctx
    providers = resolve_providers(
        config.auth.providers,
        section(parsed.data, "auth", "providers"),
        ctx,
        development=config.api.development,
    )
    _check_references(parsed, providers)
    config = check_login(config, providers, parsed.data, ctx)
    config = check_governance(config, parsed.data, ctx)  # tools.hooks, tools.approval (needs login)
    return LoadedConfig(config, providers, parsed.source, tuple(ctx.warnings), parsed.base_dir)


def _check_references(parsed: ParsedConfig, providers: Mapping[str, Provider]) -> None:
    for i, server in enumerate(parsed.config.mcp.servers):
        if server.requires_auth and server.requires_auth.provider not in providers:
            raise parsed.ctx.error(
                f"names provider {server.requires_auth.provider!r}, "
                "which is not an enabled auth.providers[] id",
                f"mcp.servers[{i}].requires_auth.provider",
                None,
            )
