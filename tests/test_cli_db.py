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
