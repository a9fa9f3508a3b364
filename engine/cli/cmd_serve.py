"""``keyturn serve``: run the engine daemon."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from engine.cli.main import config_argument
from engine.errors import KeyturnError


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
        new, new_warnings = load_settings(args)
        for warning in new_warnings:  # the same line as at start: each names its key path
            log.warning("config_warning", detail=warning)
        return new

    from engine.cli import loops
    from engine.cli.prefork import Supervisor, processes, reserve_port

    count = processes(settings.config.api.processes)
    event_loop = settings.config.api.event_loop  # a restart key: the children keep the first one's
    if count == 1:
        daemon = Daemon(settings, reload=reload)
        loops.run(daemon.run_until_stopped(), event_loop)
        return 0
    api = settings.config.api
    try:
        holder = reserve_port(api.host, api.port)  # kept open: the port stays ours while children restart
    except OSError as exc:
        raise KeyturnError(
            f"cannot listen on {api.host}:{api.port}: {exc.strerror or exc}", error="bind_failed"
        ) from None
    if api.port != holder.getsockname()[1]:  # port 0: every child (and public_url) uses the one picked
        args.port = holder.getsockname()[1]
        settings, _ = load_settings(args)

    def child(index: int) -> int:
        holder.close()
        daemon = Daemon(settings, reload=reload, reuse_port=True, leader=index == 0)
        try:
            loops.run(daemon.run_until_stopped(), event_loop)
        except KeyturnError as exc:
            print(f"keyturn: {exc.error}: {exc.msg}", file=sys.stderr)
            return 1
        return 0

    return Supervisor(count, child).run()
