"""``keyturn db upgrade|current``: database migrations."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from engine.cli.main import config_argument, load


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("db", help="database migrations", description="Apply or inspect database migrations.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    up = actions.add_parser(
        "upgrade",
        help="migrate the database to this version's schema",
        description="Apply every pending migration (safe to run twice).",
    )
    config_argument(up)
    up.set_defaults(func=run_upgrade)
    cur = actions.add_parser(
        "current",
        help="print the database's schema revision",
        description="Print the schema revision of the database and of this Keyturn.",
    )
    config_argument(cur)
    cur.set_defaults(func=run_current)


def run_upgrade(args: argparse.Namespace) -> int:
    from engine.store.db import create_engine
    from engine.store.schema import upgrade

    config = load(args).config

    async def go() -> str:
        engine = create_engine(config.storage.url or "")
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    print(f"database at revision {asyncio.run(go())}")
    return 0


def run_current(args: argparse.Namespace) -> int:
    from engine.store.db import create_engine
    from engine.store.schema import current_revision, head_revision

    config = load(args).config

    async def go() -> str | None:
        engine = create_engine(config.storage.url or "")
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    current = asyncio.run(go())
    head = head_revision()
    print(f"database: {current or 'empty'}\ncode:     {head}")
    return 0 if current == head else 1
