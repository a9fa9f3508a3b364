"""``keyturn db upgrade|current|stamp``: database migrations."""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError

from engine.cli.main import config_argument, load
from engine.errors import StorageError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine


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
    st = actions.add_parser(
        "stamp",
        help="record the revision of a database whose tables exist but carry none",
        description="Record REVISION (default: head) in a database that has Keyturn's tables but no "
        "Alembic revision, after checking every table and column that revision expects is there.",
    )
    st.add_argument("revision", nargs="?", default="head", metavar="REVISION", help="default: head")
    config_argument(st)
    st.set_defaults(func=run_stamp)


def _engine(args: argparse.Namespace) -> AsyncEngine:
    from engine.store.db import create_engine

    storage = load(args).config.storage
    return create_engine(storage.url or "", busy_timeout=float(storage.busy_timeout), pool_size=1)


def run_upgrade(args: argparse.Namespace) -> int:
    from engine.store.schema import upgrade

    engine = _engine(args)

    async def go() -> str:
        try:
            return await upgrade(engine)
        except (OSError, DBAPIError) as exc:
            raise StorageError(f"cannot use the database: {_reason(exc)}") from None
        finally:
            await engine.dispose()

    print(f"database at revision {asyncio.run(go())}")
    return 0


def run_current(args: argparse.Namespace) -> int:
    from engine.store.schema import current_revision, head_revision

    engine = _engine(args)

    async def go() -> str | None:
        try:
            return await current_revision(engine)
        except (OSError, DBAPIError) as exc:
            raise StorageError(f"cannot use the database: {_reason(exc)}") from None
        finally:
            await engine.dispose()

    current = asyncio.run(go())
    head = head_revision()
    print(f"database: {current or 'empty'}\ncode:     {head}")
    return 0 if current == head else 1


def run_stamp(args: argparse.Namespace) -> int:
    from engine.store.stamp import resolve, stamp

    revision = resolve(args.revision)
    engine = _engine(args)

    async def go() -> str:
        try:
            return await stamp(engine, revision)
        except (OSError, DBAPIError) as exc:
            raise StorageError(f"cannot use the database: {_reason(exc)}") from None
        finally:
            await engine.dispose()

    outcome = asyncio.run(go())
    print(f"database {'already at' if outcome == 'already' else 'stamped at'} revision {revision}")
    return 0


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return f"{type(orig).__name__}: {str(orig).splitlines()[0][:200] if str(orig) else ''}"
