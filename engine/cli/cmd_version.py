"""``keyturn version``."""

from __future__ import annotations

import argparse
from typing import Any

from engine import __version__


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("version", help="print the version", description="Print Keyturn's version.")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(__version__)
    return 0
