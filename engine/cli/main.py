"""``keyturn``: the command line. Each subcommand lives in its own module of this package.

A command module exposes ``register(sub)``, which adds its parser and sets ``func`` to a handler
``(args) -> int`` (the exit code). Errors the engine raises on purpose are printed in one line to
stderr and exit 1, never with a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import engine.cli
from engine import __version__
from engine.errors import ConfigError, KeyturnError

if TYPE_CHECKING:
    from engine.providers.load import LoadedConfig


def command_modules() -> list[str]:
    """Every ``engine.cli.cmd_*`` module, in name order."""
    return sorted(m.name for m in pkgutil.iter_modules(engine.cli.__path__) if m.name.startswith("cmd_"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keyturn",
        description="Keyturn: a self-hosted engine that lets AI agents act as their users.",
    )
    parser.add_argument("--version", action="version", version=f"keyturn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in command_modules():
        module = importlib.import_module(f"engine.cli.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        code: int = func(args)
    except ConfigError as exc:
        print(f"keyturn: configuration error: {exc}", file=sys.stderr)
        return 1
    except KeyturnError as exc:
        print(f"keyturn: {exc.error}: {exc.msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return code


def config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``-c/--config`` option every command that reads engine.yaml takes."""
    parser.add_argument(
        "-c",
        "--config",
        default=None,
        metavar="FILE",
        help="engine.yaml to read (default: $KEYTURN_CONFIG, else ./engine.yaml, else built-in defaults)",
    )


def config_path(args: argparse.Namespace) -> str | None:
    """The config file a command reads: -c, else $KEYTURN_CONFIG, else ./engine.yaml if present."""
    given: str | None = getattr(args, "config", None)
    if given:
        return given
    env = os.environ.get("KEYTURN_CONFIG")
    if env:
        return env
    return "engine.yaml" if os.path.exists("engine.yaml") else None


def load(args: argparse.Namespace) -> LoadedConfig:
    from engine.providers.load import load_config

    return load_config(config_path(args))


if __name__ == "__main__":
    sys.exit(main())
