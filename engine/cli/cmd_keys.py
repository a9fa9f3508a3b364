"""``keyturn keys generate|rotate``: root keys for envelope encryption."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from engine.cli.main import config_argument


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("keys", help="root keys: generate, rotate", description="Manage the root keys.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    gen = actions.add_parser(
        "generate",
        help="print a new random root key",
        description="Print a new root key (base64 of 32 random bytes) for security.root_keys[].value.",
    )
    gen.set_defaults(func=run_generate)
    rot = actions.add_parser(
        "rotate",
        help="re-encrypt every stored secret under the default key",
        description="Re-encrypt every stored secret under the key marked default: true, online and in "
        "batches. Safe to interrupt and run again: it resumes where it stopped.",
    )
    config_argument(rot)
    rot.add_argument("--batch-size", type=int, default=500, help="rows per transaction (default 500)")
    rot.set_defaults(func=run_rotate)


def run_generate(args: argparse.Namespace) -> int:
    from engine.crypto.cipher import generate_key

    print(generate_key())
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_engine
    from engine.events import OpsEvent
    from engine.store.rotate import pending, rotate
    from engine.wiring.services import AUDITOR, STORE
    from engine.wiring.settings import EVENTS

    async def go() -> tuple[int, int, str]:
        async with open_engine(args, until=AUDITOR) as app:
            store = app[STORE]
            app[AUDITOR].require_ready()
            done = await rotate(
                store,
                batch_size=max(1, args.batch_size),
                on_progress=lambda table, n: print(f"{table}: {n} values re-encrypted", file=sys.stderr),
            )
            left = await pending(store)
            key_id = store.keyring.default_id
            app[EVENTS].publish(OpsEvent(name="key.rotated", details={"count": done, "key_id": key_id}))
            return done, left, key_id

    done, left, key_id = asyncio.run(go())
    print(f"re-encrypted {done} values under key {key_id!r}; {left} left under other keys")
    return 0 if left == 0 else 1
