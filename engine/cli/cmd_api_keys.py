"""``keyturn api-keys create NAME|list|revoke ID_OR_NAME``: keys applications use to call /v1/*."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from engine.cli.main import config_argument
from engine.errors import BadRequest, NotFound


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "api-keys",
        help="create, list and revoke API keys",
        description="API keys stored in the database (as salted hashes).",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser(
        "create",
        help="create a key (shown once)",
        description="Create an API key; the key is printed once and cannot be shown again.",
    )
    create.add_argument("name", help="a name for the key, e.g. the application using it")
    create.add_argument(
        "--tools",
        action="append",
        metavar="GLOBS",
        help="limit the key to tools matching these globs over Toolkit.Tool names ('Gmail.*'); "
        "comma-separated or repeated; other tools are invisible to the key",
    )
    config_argument(create)
    create.set_defaults(func=run_create)
    ls = actions.add_parser(
        "list", help="list keys (never the keys themselves)", description="List API keys."
    )
    config_argument(ls)
    ls.set_defaults(func=run_list)
    revoke = actions.add_parser("revoke", help="revoke a key", description="Revoke an API key by id or name.")
    revoke.add_argument("key", metavar="ID_OR_NAME")
    config_argument(revoke)
    revoke.set_defaults(func=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_store

    tools = None
    if args.tools is not None:
        tools = [g.strip() for value in args.tools for g in value.split(",") if g.strip()]
        if not tools:
            raise BadRequest("--tools needs at least one glob, e.g. --tools 'Gmail.*'")

    async def go() -> tuple[str, str]:
        async with open_store(args, migrate=True) as store:
            record, plain = await store.api_keys.create(args.name, tools=tools)
            return record.id, plain

    key_id, plain = asyncio.run(go())
    print(plain)
    limited = f", limited to tools {', '.join(tools)}" if tools else ""
    print(
        f"created API key {args.name!r} (id {key_id}{limited}); store it now: it is not shown again",
        flush=True,
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_store

    async def go() -> list[Any]:
        async with open_store(args) as store:
            return await store.api_keys.list()

    for key in asyncio.run(go()):
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never"
        tools = "all tools" if key.tools is None else "tools " + ",".join(key.tools)
        created = f"{key.created_at:%Y-%m-%d}"
        print(f"{key.id}  {key.name:<24} {state:<24} created {created}  last used {used}  {tools}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_store

    async def go() -> bool:
        async with open_store(args) as store:
            return await store.api_keys.revoke(args.key)

    if not asyncio.run(go()):
        raise NotFound(f"no active API key {args.key!r}")
    print(f"revoked {args.key}")
    return 0
