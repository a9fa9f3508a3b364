"""``keyturn audit hash USER`` and ``keyturn audit export``: find a user's audit records.

``hash`` prints the ``user_ref`` a user's records carry; ``export`` prints what the database sink
stored (``--since``/``--until``/``--user``, JSON lines or CSV).

The installation's audit salt comes from ``--salt-file`` or ``$KEYTURN_AUDIT_SALT`` (hex), else from
the engine's database (``-c engine.yaml``). ``keyturn audit hash alice | xargs -I{} grep {} audit.log`` finds
alice's lines.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
from datetime import UTC, datetime
from typing import Any

from engine.cli.main import config_argument
from engine.errors import BadRequest, ConfigError
from engine.store.models import AUDIT_COLUMNS

SALT_ENV = "KEYTURN_AUDIT_SALT"


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("audit", help="audit record tools", description="Tools for Keyturn's audit records.")
    audit_sub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    h = audit_sub.add_parser(
        "hash",
        help="print the user_ref of a user id",
        description=(
            "Print the user_ref (HMAC-SHA256 of the user id with the installation's audit salt) that the "
            f"user's audit records carry. The salt (hex) is read from --salt-file, else ${SALT_ENV}."
        ),
    )
    h.add_argument("user", metavar="USER", help="the user id as the engine's callers send it")
    h.add_argument("--salt-file", metavar="FILE", default=None, help="file holding the audit salt in hex")
    config_argument(h)
    h.set_defaults(func=run_hash)
    e = audit_sub.add_parser(
        "export",
        help="export records from the database sink",
        description="Print the audit records the database sink stored, oldest first, as JSON lines or CSV.",
    )
    e.add_argument(
        "--since", metavar="TIME", default=None, help="ISO 8601 start (inclusive), e.g. 2026-11-01"
    )
    e.add_argument("--until", metavar="TIME", default=None, help="ISO 8601 end (exclusive)")
    e.add_argument("--user", metavar="USER_ID", default=None, help="only this user's records")
    e.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    config_argument(e)
    e.set_defaults(func=run_export)
    p.set_defaults(func=lambda _args: (p.print_help(), 2)[1])


def read_salt(salt_file: str | None) -> bytes:
    """The salt from ``salt_file``, else ``$KEYTURN_AUDIT_SALT``; ConfigError naming the source."""
    from engine.audit.processors import parse_salt

    if salt_file:
        try:
            with open(salt_file, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"cannot read salt file {salt_file}: {exc.strerror}") from None
        return parse_salt(text, where=f"salt file {salt_file}")
    text = os.environ.get(SALT_ENV, "")
    if not text.strip():
        raise ConfigError(
            f"no audit salt: pass -c engine.yaml (the engine's database), --salt-file FILE or set {SALT_ENV}"
        )
    return parse_salt(text, where=SALT_ENV)


def run_hash(args: argparse.Namespace) -> int:
    from engine.audit.processors import user_ref

    if args.config and not args.salt_file and not os.environ.get(SALT_ENV, "").strip():
        salt = asyncio.run(_database_salt(args))  # the engine's own salt, from its database
    else:
        salt = read_salt(args.salt_file)
    print(user_ref(salt, args.user))
    return 0


async def _database_salt(args: argparse.Namespace) -> bytes:
    from engine.cli.storecmd import open_store

    async with open_store(args) as store:
        return await store.meta.installation_salt()


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(
            f"--{name} must be an ISO 8601 time such as 2026-11-01 or 2026-11-01T12:00"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_export(args: argparse.Namespace) -> int:
    from engine.audit.processors import user_ref
    from engine.cli.storecmd import open_engine
    from engine.events import OpsEvent
    from engine.wiring.services import AUDITOR, STORE
    from engine.wiring.settings import EVENTS

    since, until = _time(args.since, "since"), _time(args.until, "until")

    async def go() -> list[dict[str, Any]]:
        async with open_engine(args, until=AUDITOR) as app:
            store = app[STORE]
            ref = user_ref(await store.meta.installation_salt(), args.user) if args.user else None
            records = await store.audit.list(since=since, until=until, user_ref=ref)
            app[EVENTS].publish(OpsEvent(name="audit.exported", details={"count": len(records)}))
            return records

    records = asyncio.run(go())
    if args.format == "jsonl":
        for record in records:
            print(json.dumps(record, sort_keys=True, default=str))
        return 0
    columns = ["time", *AUDIT_COLUMNS, "data"]
    writer = csv.writer(sys.stdout)
    writer.writerow(columns)
    for record in records:
        extra = {k: v for k, v in record.items() if k not in columns}
        writer.writerow(
            [record.get(c, "") for c in columns[:-1]] + [json.dumps(extra, sort_keys=True, default=str)]
        )
    return 0
