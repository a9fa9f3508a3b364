"""``keyturn serve``: run the engine daemon."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from engine.cli.main import config_argument


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the engine",
        description="Run the Keyturn engine: the HTTP API, browser endpoints, MCP, refresh scheduler.",
    )
    config_argument(p)
    p.add_argument("--host", default=None, help="override api.host")
    p.add_argument("--port", type=int, default=None, help="override api.port (0 picks a free port)")
    p.set_defaults(func=run)


def load_settings(args: argparse.Namespace) -> Any:
    from engine.cli.main import config_path
    from engine.net import ClientAddress
    from engine.providers.load import load_config
    from engine.wiring.settings import Settings

    loaded = load_config(config_path(args), listen=(args.host, args.port))  # public_url follows them
    config = loaded.config
    return Settings(
        config=config,
        providers=dict(loaded.providers),
        source=loaded.source,
        client_address=ClientAddress(config.api.trusted_proxies),
        base_dir=loaded.base_dir,
    ), loaded.warnings


def run(args: argparse.Namespace) -> int:
    from engine.daemon import Daemon
    from engine.logs import configure_logging

    settings, warnings = load_settings(args)
    configure_logging(settings.config.logging.level, settings.config.logging.format)
    import structlog

    log = structlog.get_logger("keyturn")
    for warning in warnings:
        log.warning("config_warning", detail=warning)

    def reload() -> Any:
        new, _ = load_settings(args)
        return new

    daemon = Daemon(settings, reload=reload)
    asyncio.run(daemon.run_until_stopped())
    return 0
