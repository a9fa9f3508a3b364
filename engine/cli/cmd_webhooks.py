"""``keyturn webhooks list|replay``: the outbox's deliveries, and sending an event again."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from engine.cli.main import config_argument
from engine.errors import BadRequest, NotFound

STATUSES = ("pending", "delivered", "failed")


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "webhooks",
        help="list webhook deliveries, or replay an event",
        description="Webhook events (webhooks: in engine.yaml) and their delivery to each endpoint.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser(
        "list",
        help="list deliveries",
        description="Deliveries, newest event first: id, event id, type, endpoint, status, attempts, "
        "last error.",
    )
    ls.add_argument("--status", choices=STATUSES, default=None, help="only deliveries in this status")
    ls.add_argument("--endpoint", default=None, help="only deliveries to this webhooks[].id")
    ls.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    config_argument(ls)
    ls.set_defaults(func=run_list)
    rp = actions.add_parser(
        "replay",
        help="deliver an event again",
        description="Queue an event (evt_...) again for every endpoint that takes its type now, or one "
        "delivery (whd_...); attempts and the give-up clock start over. The running server sends it "
        "within seconds.",
    )
    rp.add_argument("id", help="an event id (evt_...) or a delivery id (whd_...)")
    rp.add_argument("--endpoint", default=None, help="only to this webhooks[].id")
    config_argument(rp)
    rp.set_defaults(func=run_replay)


def _when(value: Any) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value is not None else "-"


def run_list(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_store

    if args.limit < 1:
        raise BadRequest("--limit must be at least 1", error="invalid_input")

    async def go() -> list[Any]:
        async with open_store(args) as store:
            return await store.outbox.list(status=args.status, endpoint_id=args.endpoint, limit=args.limit)

    rows = asyncio.run(go())
    if not rows:
        print("no deliveries")
        return 0
    for d in rows:
        when = d.delivered_at if d.status == "delivered" else d.next_attempt_at
        print(
            f"{d.id}  {d.event_id}  {d.type:<26} {d.endpoint_id:<16} {d.status:<9} "
            f"attempts={d.attempts}  error={d.last_error or '-'}  event={_when(d.event_created_at)}  "
            f"{'delivered' if d.status == 'delivered' else 'next'}={_when(when)}"
        )
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from engine.cli.main import load
    from engine.cli.storecmd import open_store

    target: str = args.id
    if not target.startswith(("evt_", "whd_")) or len(target) > 40:
        raise BadRequest("give an event id (evt_...) or a delivery id (whd_...)", error="invalid_input")
    hooks = [h for h in load(args).config.webhooks if h.enabled]
    if args.endpoint is not None and args.endpoint not in {h.id for h in hooks}:
        raise NotFound(f"no webhooks[] entry with id {args.endpoint!r}")

    def routes(event_type: str) -> list[str]:
        return [h.id for h in hooks if event_type in h.events]

    async def go() -> int:
        async with open_store(args) as store:
            return await store.outbox.replay(target, routes, endpoint_id=args.endpoint)

    count = asyncio.run(go())
    if not count:
        raise NotFound(f"nothing to replay for {target!r} (unknown id, or no endpoint takes its type)")
    print(f"queued {count} deliver{'ies' if count != 1 else 'y'} of {target}")
    return 0
