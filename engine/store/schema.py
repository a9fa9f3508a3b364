"""Alembic migrations shipped in the package: upgrade, and refuse a schema older (or newer) than the code."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.errors import StorageError

# stdlib, not structlog: a CLI command that migrates (api-keys create) prints only its own output; under
# `serve` engine.logs routes this logger into the same log lines
log = logging.getLogger("keyturn.store")

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _current(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _upgrade(conn: sa.Connection) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def upgrade(engine: AsyncEngine) -> str:
    """Bring the database to the code's schema; returns the revision reached.

    A database migrated by a newer Keyturn is refused, not touched.
    """
    current = await current_revision(engine)
    _refuse_newer(current)
    head = head_revision()
    if current == head:
        return head
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    # Alembic's own INFO lines are quieted (engine.logs): this is the one line a migration writes
    log.info("database_migrated", extra={"from_revision": current or "none", "to_revision": head})
    return head


def _refuse_newer(current: str | None) -> None:
    if current is None:
        return
    known = {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    if current not in known:
        raise StorageError(
            f"database schema is at revision {current}, which is newer than this Keyturn "
            f"({head_revision()}): upgrade Keyturn, or restore a backup made for this version"
        )


def _has_tables(conn: sa.Connection) -> bool:
    return bool(sa.inspect(conn).get_table_names())


async def check_schema(engine: AsyncEngine) -> None:
    """Raise :class:`StorageError` unless the database is exactly at the code's revision."""
    current = await current_revision(engine)
    head = head_revision()
    if current == head:
        return
    _refuse_newer(current)
    raise StorageError(
        f"database schema is at revision {current or 'none'} but this Keyturn needs {head}: "
        "run `keyturn db upgrade -c engine.yaml`"
    )


async def ensure_schema(engine: AsyncEngine) -> None:
    """Create the schema in an empty database; otherwise refuse anything but the current revision."""
    async with engine.connect() as conn:
        empty = not await conn.run_sync(_has_tables)
    if empty:
        await upgrade(engine)
        return
    if (
        await current_revision(engine) is None
    ):  # tables but no revision: made by hand, or alembic_version lost
        raise StorageError(
            f"database schema is at revision none but this Keyturn needs {head_revision()}: the tables are "
            "there but unrecorded; if they are Keyturn's, run `keyturn db stamp -c engine.yaml` (it checks "
            "them first), then `keyturn db upgrade -c engine.yaml`"
        )
    await check_schema(engine)
