"""``keyturn audit hash USER``: the ``user_ref`` a user's audit records carry.

The installation's audit salt (hex) comes from ``--salt-file`` or ``$KEYTURN_AUDIT_SALT``; the
engine keeps it in its store. ``keyturn audit hash alice | xargs -I{} grep {} audit.log`` finds
alice's lines.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from engine.errors import ConfigError

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
    h.set_defaults(func=run_hash)
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
        raise ConfigError(f"no audit salt: pass --salt-file FILE or set {SALT_ENV}")
    return parse_salt(text, where=SALT_ENV)


def run_hash(args: argparse.Namespace) -> int:
    from engine.audit.processors import user_ref

    print(user_ref(read_salt(args.salt_file), args.user))
    return 0
