"""``keyturn check-config``: load engine.yaml, report problems, print the resolved providers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from engine.cli.main import config_argument, load


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "check-config",
        help="validate engine.yaml and print the resolved providers (secrets masked)",
        description="Validate engine.yaml. Exit 0 when it loads, 1 with the file, line and key path "
        "otherwise. "
        "Prints the resolved providers (templates merged, placeholders filled) with secrets masked.",
    )
    config_argument(p)
    p.add_argument("--json", action="store_true", help="print the resolved config as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from engine.config.convert import to_data
    from engine.providers.describe import describe_provider

    loaded = load(args)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    providers = {pid: describe_provider(p) for pid, p in loaded.providers.items()}
    if args.json:
        out = {
            "source": loaded.source,
            "config": to_data(loaded.config, mask_secrets=True),
            "providers": providers,
        }
        print(json.dumps(out, indent=2, sort_keys=True, default=str))
        return 0
    print(f"{loaded.source}: OK")
    print(f"storage: {_mask_url(loaded.config.storage.url or '')}")
    print(f"public_url: {loaded.config.api.public_url}")
    print(f"providers: {len(providers)}")
    for pid, described in providers.items():
        print(f"- {pid}:")
        for line in json.dumps(described, indent=2, sort_keys=True).splitlines():
            print(f"    {line}")
    return 0


def _mask_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":********@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url
