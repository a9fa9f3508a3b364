"""keyturn db upgrade|current against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.cli.main import main
from engine.crypto.cipher import generate_key
from engine.store.db import create_engine
from engine.store.schema import head_revision


def write_config(tmp_path: Path, url: str) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        f"api: {{development: true}}\nstorage: {{url: '{url}'}}\n"
        f"security: {{root_keys: [{{id: k1, value: '{generate_key()}'}}]}}\n"
    )
    return cfg


def set_revision(url: str, revision: str) -> None:
    async def go() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        await engine.dispose()

    asyncio.run(go())


def test_upgrade_and_current(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """db current on an empty database exits 1; db upgrade (twice) brings it to the code's revision."""
    cfg = write_config(tmp_path, store_url)
    assert main(["db", "current", "-c", str(cfg)]) == 1
    assert "database: empty" in capsys.readouterr().out
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert f"database at revision {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "-c", str(cfg)]) == 0
    assert f"database: {head_revision()}" in capsys.readouterr().out


def test_newer_database_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """db upgrade on a database from a newer Keyturn exits 1 with one line saying so, and changes nothing."""
    url = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    cfg = write_config(tmp_path, url)
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    set_revision(url, "9999_future")
    assert main(["db", "upgrade", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "newer than this Keyturn" in err and "Traceback" not in err
    assert main(["db", "current", "-c", str(cfg)]) == 1


def test_unreachable_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """db upgrade against a database that does not answer exits 1 with the reason, no traceback."""
    cfg = write_config(tmp_path, "postgresql+asyncpg://postgres@127.0.0.1:1/none")
    assert main(["db", "upgrade", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "cannot use the database" in err and "Traceback" not in err


def migrate_to(url: str, revision: str, *, unrecorded: bool = True) -> None:
    """Bring the database to ``revision``'s schema; with ``unrecorded``, drop alembic_version afterwards."""
    from alembic import command

    from engine.store.schema import alembic_config

    def sync(conn: sa.Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        if unrecorded:
            conn.execute(sa.text("DROP TABLE alembic_version"))

    async def go() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(sync)
        await engine.dispose()

    asyncio.run(go())


def execute(url: str, sql: str) -> None:
    async def go() -> None:
        engine = create_engine(url)
        async with engine.begin() as conn:
            await conn.execute(sa.text(sql))
        await engine.dispose()

    asyncio.run(go())


def test_stamp_records_head_on_unrecorded_tables(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tables without a revision: db upgrade fails on them; db stamp records head; current, upgrade pass."""
    cfg = write_config(tmp_path, store_url)
    migrate_to(store_url, "head")
    assert main(["db", "current", "-c", str(cfg)]) == 1
    assert main(["db", "upgrade", "-c", str(cfg)]) == 1  # the existing tables are in the way
    capsys.readouterr()
    assert main(["db", "stamp", "-c", str(cfg)]) == 0
    assert f"database stamped at revision {head_revision()}" in capsys.readouterr().out
    assert main(["db", "current", "-c", str(cfg)]) == 0
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert main(["db", "stamp", "-c", str(cfg)]) == 0  # again: already there
    assert f"database already at revision {head_revision()}" in capsys.readouterr().out


def test_stamp_refuses_tables_of_an_older_revision(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Tables made by 0007: stamping head exits 1 naming missing columns; stamp 0007, then upgrade works."""
    cfg = write_config(tmp_path, store_url)
    migrate_to(store_url, "0007")
    assert main(["db", "stamp", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "column grants.account" in err and "column flows.account" in err and "not stamped" in err
    assert "Traceback" not in err
    assert main(["db", "current", "-c", str(cfg)]) == 1
    assert "database: empty" in capsys.readouterr().out
    assert main(["db", "stamp", "0007", "-c", str(cfg)]) == 0
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert f"database at revision {head_revision()}" in capsys.readouterr().out


def test_stamp_refuses_a_missing_table(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A head-schema database lacking one table is refused with that table named, and nothing recorded."""
    cfg = write_config(tmp_path, store_url)
    migrate_to(store_url, "head")
    execute(store_url, "DROP TABLE approvals")
    assert main(["db", "stamp", "head", "-c", str(cfg)]) == 1
    assert "table approvals" in capsys.readouterr().err
    assert main(["db", "current", "-c", str(cfg)]) == 1


def test_stamp_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """db stamp exits 1 on an unknown revision, an empty database and one that already has a revision."""
    url = f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    cfg = write_config(tmp_path, url)
    assert main(["db", "stamp", "nope", "-c", str(cfg)]) == 1
    assert "unknown revision 'nope'" in capsys.readouterr().err
    assert main(["db", "stamp", "-c", str(cfg)]) == 1
    assert "has no tables: run `keyturn db upgrade`" in capsys.readouterr().err
    migrate_to(url, "0007", unrecorded=False)
    assert main(["db", "stamp", "-c", str(cfg)]) == 1
    assert "already recorded at revision 0007" in capsys.readouterr().err
