"""``keyturn db stamp``: record the Alembic revision of a database whose tables are there but unrecorded."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.errors import StorageError
from engine.store.schema import alembic_config, head_revision

VERSION_TABLE = "alembic_version"


def resolve(revision: str) -> str:
    """``head`` or a revision this Keyturn ships; anything else is refused naming the known ones."""
    if revision == "head":
        return head_revision()
    known = [rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()]
    if revision not in known:
        raise StorageError(f"unknown revision {revision!r}: this Keyturn has {', '.join(reversed(known))}")
    return revision


def _columns(conn: sa.Connection) -> dict[str, set[str]]:
    insp = sa.inspect(conn)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names() if t != VERSION_TABLE}


def expected_columns(revision: str) -> dict[str, set[str]]:
    """Every table and column the schema at ``revision`` has: migrated into a throwaway in-memory SQLite."""
    reference = sa.create_engine("sqlite://")
    try:
        with reference.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            return _columns(conn)
    finally:
        reference.dispose()


def missing(expected: dict[str, set[str]], found: dict[str, set[str]]) -> list[str]:
    """What ``found`` lacks of ``expected``: ``table t`` or ``column t.c``, sorted."""
    gaps: list[str] = []
    for table in sorted(expected):
        if table not in found:
            gaps.append(f"table {table}")
            continue
        gaps.extend(f"column {table}.{col}" for col in sorted(expected[table] - found[table]))
    return gaps


def _stamp(conn: sa.Connection, revision: str) -> str:
    current = MigrationContext.configure(conn).get_current_revision()
    if current == revision:
        return "already"
    if current is not None:
        raise StorageError(
            f"database schema is already recorded at revision {current}: run `keyturn db upgrade`, not stamp"
        )
    found = _columns(conn)
    if not found:
        raise StorageError("the database has no tables: run `keyturn db upgrade` to create them")
    gaps = missing(expected_columns(revision), found)
    if gaps:
        shown = ", ".join(gaps[:10]) + (f" and {len(gaps) - 10} more" if len(gaps) > 10 else "")
        raise StorageError(
            f"the tables do not match revision {revision}'s schema (missing {shown}): not stamped; "
            "stamp the revision they were made by, or restore a backup"
        )
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    try:
        command.stamp(cfg, revision)
    except CommandError as exc:
        raise StorageError(f"cannot stamp revision {revision}: {exc}") from None
    return "stamped"


async def stamp(engine: AsyncEngine, revision: str) -> str:
    """Record ``revision`` (resolved, checked) in a database with tables but no revision.

    Returns ``stamped`` or ``already`` (it was at that revision); raises :class:`StorageError` otherwise.
    """
    target = resolve(revision)
    async with engine.begin() as conn:
        return await conn.run_sync(_stamp, target)
