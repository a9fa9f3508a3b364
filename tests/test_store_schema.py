"""engine.store.schema on SQLite and PostgreSQL: migrate an empty database, refuse older or newer schemas."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.errors import StorageError
from engine.store.db import create_engine
from engine.store.models import metadata
from engine.store.schema import check_schema, current_revision, ensure_schema, head_revision, upgrade


@pytest.fixture
async def schema_engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    yield engine
    await engine.dispose()


async def set_revision(engine: AsyncEngine, revision: str | None) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM alembic_version"))
        if revision is not None:
            await conn.execute(sa.text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})


async def test_empty_database_is_migrated(schema_engine: AsyncEngine) -> None:
    """ensure_schema creates every table in an empty database and stamps the code's revision."""
    assert await current_revision(schema_engine) is None
    await ensure_schema(schema_engine)
    assert await current_revision(schema_engine) == head_revision()
    await check_schema(schema_engine)
    assert await upgrade(schema_engine) == head_revision()  # a second upgrade is a no-op


async def test_migration_matches_models(schema_engine: AsyncEngine) -> None:
    """The tables the migrations build are the tables the code's models describe."""
    await upgrade(schema_engine)

    def diff(conn: sa.Connection) -> list[object]:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))

    async with schema_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_stale_schema_refused(schema_engine: AsyncEngine) -> None:
    """Tables without a revision are refused naming db stamp (db upgrade would trip over the tables)."""
    await upgrade(schema_engine)
    await set_revision(schema_engine, None)
    message = (
        f"database schema is at revision none but this Keyturn needs {head_revision()}: the tables are "
        "there but unrecorded; if they are Keyturn's, run `keyturn db stamp -c engine.yaml`"
    )
    with pytest.raises(StorageError) as caught:
        await ensure_schema(schema_engine)  # not empty: checked, never migrated implicitly
    assert message in str(caught.value)
    await set_revision(schema_engine, head_revision())
    await check_schema(schema_engine)


async def test_newer_schema_refused(schema_engine: AsyncEngine) -> None:
    """A database migrated by a newer Keyturn is refused by check and by upgrade, and left unchanged."""
    await upgrade(schema_engine)
    await set_revision(schema_engine, "9999_future")
    for attempt in (check_schema, upgrade):
        with pytest.raises(StorageError, match="9999_future, which is newer than this Keyturn"):
            await attempt(schema_engine)
    assert await current_revision(schema_engine) == "9999_future"


async def test_grants_before_accounts_become_the_default_account(schema_engine: AsyncEngine) -> None:
    """Migration 0008 keeps every grant written before accounts as account 'default', and a second
    account of the same user and provider is then allowed (the unique key includes the account)."""
    from alembic import command

    from engine.store.schema import alembic_config

    def to(revision: str) -> object:
        def run(conn: sa.Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

        return run

    async with schema_engine.begin() as conn:
        await conn.run_sync(to("0007"))
        await conn.execute(
            sa.text(
                "INSERT INTO grants (id, user_id, provider_id, status, scopes, access_token, token_type,"
                " token_metadata, created_at, updated_at, refresh_failures, version) VALUES ('gr_old', 'u',"
                " 'p', 'active', '[]', :b, 'Bearer', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0, 1)"
            ),
            {"b": b"x"},
        )
    await upgrade(schema_engine)
    async with schema_engine.begin() as conn:
        row = (await conn.execute(sa.text("SELECT account, is_default FROM grants"))).one()
        assert row[0] == "default" and not row[1]
        await conn.execute(
            sa.text(
                "INSERT INTO grants (id, user_id, provider_id, account, status, scopes, access_token,"
                " token_type, token_metadata, created_at, updated_at, refresh_failures, version) VALUES"
                " ('gr_new', 'u', 'p', 'work', 'active', '[]', :b, 'Bearer', '{}', CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP, 0, 1)"
            ),
            {"b": b"x"},
        )


async def test_sqlite_grant_writes_bump_grant_changes(schema_engine: AsyncEngine) -> None:
    """On SQLite the head schema counts every insert, update and delete of a grant in grant_changes
    (the grant cache's stamp); PostgreSQL has the table without triggers."""
    await upgrade(schema_engine)
    async with schema_engine.begin() as conn:
        count = (await conn.execute(sa.text("SELECT n FROM grant_changes WHERE id = 1"))).scalar_one()
        assert count == 0
        if schema_engine.dialect.name != "sqlite":
            return
        names = (
            await conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger' ORDER BY name"))
        ).scalars()
        assert list(names) == ["grants_changed_delete", "grants_changed_insert", "grants_changed_update"]
        cols = (await conn.execute(sa.text("PRAGMA table_info(grants)"))).all()
        required = [c[1] for c in cols if (c[3] or c[5]) and c[4] is None]
        values = {c: "x" for c in required}
        marks = ", ".join(":" + c for c in values)
        await conn.execute(sa.text(f"INSERT INTO grants ({', '.join(values)}) VALUES ({marks})"), values)
        await conn.execute(sa.text("UPDATE grants SET version = version + 1"))
        await conn.execute(sa.text("DELETE FROM grants"))
        count = (await conn.execute(sa.text("SELECT n FROM grant_changes WHERE id = 1"))).scalar_one()
        assert count == 3
