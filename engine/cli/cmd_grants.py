"""``keyturn grants list|revoke``: users' connections, and disconnecting them (RFC 7009)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from engine.cli.main import config_argument
from engine.errors import NotFound

if TYPE_CHECKING:
    from engine.flows.revoke import Revocation


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "grants",
        help="list or revoke users' grants",
        description="The grants (connected accounts) Keyturn holds; never shows a token.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser(
        "list", help="list grants", description="List grants, optionally for one user/provider."
    )
    ls.add_argument("--user", default=None, help="user id")
    ls.add_argument("--provider", default=None, help="provider id")
    ls.add_argument("--json", action="store_true", help="one JSON object per grant, one per line")
    config_argument(ls)
    ls.set_defaults(func=run_list)
    rv = actions.add_parser(
        "revoke",
        help="revoke a user's grants",
        description="Revoke a user's grants: each becomes unusable at once, is revoked at the provider "
        "(RFC 7009) and deleted; when the provider cannot be reached it stays revoked and the engine "
        "retries; when its provider is no longer configured it is deleted here and the output says it "
        "was not revoked at the provider.",
        epilog="Exit status: 0 every grant was revoked at its provider (or was an entered API key) and "
        "deleted; 1 an error (no such grant, configuration, audit); 3 at least one grant is unusable or "
        "deleted here but NOT confirmed revoked at its provider (the message on stderr says which).",
    )
    rv.add_argument("--user", required=True, help="user id")
    rv.add_argument("--provider", default=None, help="only this provider's grant")
    config_argument(rv)
    rv.set_defaults(func=run_revoke)


def run_list(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_store

    async def go() -> list[Any]:
        async with open_store(args) as store:
            return await store.grants.list(user_id=args.user, provider_id=args.provider)

    for g in asyncio.run(go()):
        if args.json:
            print(json.dumps(_listed(g), sort_keys=True))
            continue
        expires = f"{g.expires_at:%Y-%m-%d %H:%M}" if g.expires_at else "-"
        print(
            f"{g.id}  {g.user_id:<32} {g.provider_id:<16} {g.account:<16} {g.status:<13} "
            f"expires {expires}  scopes {' '.join(g.scopes)}"
        )
    return 0


def _listed(g: Any) -> dict[str, Any]:
    """What ``grants list --json`` says of a grant: never a token."""
    return {
        "id": g.id,
        "user_id": g.user_id,
        "provider_id": g.provider_id,
        "account": g.account,
        "is_default": g.is_default,
        "status": g.status,
        "scopes": list(g.scopes),
        "expires_at": g.expires_at.isoformat() if g.expires_at else None,
    }


NOT_CONFIRMED = 3  # the exit status when a grant was not confirmed revoked at its provider

OUTCOME_TEXT = {
    "revoked": "revoked",
    "retry_later": "unusable here (kept, status revoked) but NOT yet revoked at the provider (it could not "
    "be reached); the running engine retries",
    "not_revoked_at_provider": "deleted here but NOT revoked at the provider (provider no longer configured)",
    "unreadable": "deleted here but NOT revoked at the provider (its stored tokens could not be read)",
}


def run_revoke(args: argparse.Namespace) -> int:
    from engine.cli.storecmd import open_engine
    from engine.flows.revoke import REVOKED
    from engine.wiring.services import AUDITOR, REVOKER, STORE

    async def go() -> list[tuple[str, Revocation]]:
        async with open_engine(args, until=REVOKER) as app:
            grants = await app[STORE].grants.list(user_id=args.user, provider_id=args.provider)
            done = []
            for grant in grants:
                app[AUDITOR].require_ready()  # audit.required: refused before anything changes
                result = await app[REVOKER].revoke(grant.id)  # audited: grant.revoked
                if result is not None:
                    done.append((grant.account, result))
            return done

    results = asyncio.run(go())
    if not results:
        raise NotFound(
            f"no grants for user {args.user!r}"
            + (f" and provider {args.provider!r}" if args.provider else "")
        )
    per_provider = Counter(r.provider_id for _, r in results)
    for account, result in results:
        text = OUTCOME_TEXT.get(result.reason or "") or OUTCOME_TEXT[result.outcome]
        several = per_provider[result.provider_id] > 1  # name the account when the user has several there
        name = f"{result.provider_id} ({account})" if several else result.provider_id
        print(f"{name}: {text}")
    missed = [r for _, r in results if r.outcome != REVOKED]
    if not missed:
        return 0
    kept = sum(not r.deleted for r in missed)
    print(
        f"keyturn: {len(missed)} of {len(results)} grant(s) NOT confirmed revoked at the provider "
        f"({len(missed) - kept} deleted here, {kept} kept unusable for a retry); their tokens may still "
        "be valid there",
        file=sys.stderr,
    )
    return NOT_CONFIRMED
