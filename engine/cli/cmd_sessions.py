"""``keyturn sessions list|revoke``: who is signed in (login:), and signing people out."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from engine.cli.main import config_argument
from engine.errors import BadRequest, NotFound


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "sessions",
        help="list or revoke sign-in sessions",
        description="Browser sessions made by signing in at login.provider; never shows a session secret.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser(
        "list", help="list sessions", description="List live sessions, optionally of one user."
    )
    ls.add_argument("--user", default=None, help="user id (as signed in: the login.user_claim value)")
    config_argument(ls)
    ls.set_defaults(func=run_list)
    rv = actions.add_parser(
        "revoke",
        help="sign a user out",
        description="End a user's sessions (or one, by its se_ id) at once: their next page asks them to "
        "sign in again. Audited as session.revoked.",
    )
    rv.add_argument("--user", default=None, help="user id: every session of this user")
    rv.add_argument("--id", default=None, help="one session id (se_...)")
    config_argument(rv)
    rv.set_defaults(func=run_revoke)


def run_list(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_store
    from engine.store.base import now_utc

    async def go() -> list[Any]:
        async with open_store(args) as store:
            return await store.sessions.list(user_id=args.user)

    now = now_utc()
    for s in asyncio.run(go()):
        if s.expires_at <= now:
            continue
        print(
            f"{s.id}  {s.user_id:<32} signed in {s.created_at:%Y-%m-%d %H:%M}  "
            f"last used {s.last_used_at:%Y-%m-%d %H:%M}  expires {s.expires_at:%Y-%m-%d %H:%M}"
        )
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_engine
    from engine.events import LoginEvent
    from engine.wiring.services import AUDITOR, STORE
    from engine.wiring.settings import EVENTS

    if not args.user and not args.id:
        raise BadRequest("give --user USER or --id SESSION_ID", error="invalid_input")

    async def go() -> list[str]:
        async with open_engine(args, until=AUDITOR) as app:
            app[AUDITOR].require_ready()
            ids: list[str] = await app[STORE].sessions.revoke(user_id=args.user, session_id=args.id)
            if ids:
                revoked = LoginEvent(
                    name="session.revoked", outcome="success", user_id=args.user, reason="cli", count=len(ids)
                )
                app[EVENTS].publish(revoked)
            return ids

    ids = asyncio.run(go())
    if not ids:
        who = f"user {args.user!r}" if args.user else f"session {args.id!r}"
        raise NotFound(f"no sessions for {who}")
    print(f"revoked {len(ids)} session{'s' if len(ids) != 1 else ''}")
    return 0
