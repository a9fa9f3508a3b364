"""keyturn sessions list|revoke against a real database."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.cli.main import main
from engine.cli.storecmd import open_store
from engine.crypto.cipher import generate_key


def write_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(f"""
api: {{development: true}}
storage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}
security: {{root_keys: [{{id: k, value: '{generate_key()}'}}]}}
audit: {{sinks: [database]}}
""")
    return cfg


class Args:
    def __init__(self, cfg: Path) -> None:
        self.config = str(cfg)


async def test_list_and_revoke_a_users_sessions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """sessions list shows ids and users, never the cookie value; revoke --user ends them (audited to the
    configured database sink, the user as user_ref)."""
    cfg = write_config(tmp_path)
    async with open_store(Args(cfg), migrate=True) as store:  # type: ignore[arg-type]
        alice, _ = await store.sessions.create("alice@example.test", 3600)
        await store.sessions.create("alice@example.test", 3600)
        bob, bobs = await store.sessions.create("bob@example.test", 3600)
    assert await _run(["sessions", "list", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.count("alice@example.test") == 2 and "bob@example.test" in out and bobs.id in out
    assert alice not in out and bob not in out
    assert await _run(["sessions", "revoke", "--user", "alice@example.test", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "revoked 2 sessions"
    async with open_store(Args(cfg)) as store:  # type: ignore[arg-type]
        assert await store.sessions.lookup(alice) is None and await store.sessions.lookup(bob) is not None
        async with store.engine.connect() as conn:
            rows = (await conn.execute(sa.text("SELECT event, user_ref, data FROM audit_events"))).all()
    assert [r[0] for r in rows] == ["session.revoked"] and rows[0][1] and "alice" not in str(rows[0])
    assert await _run(["sessions", "revoke", "--id", bobs.id, "-c", str(cfg)]) == 0
    assert await _run(["sessions", "revoke", "--user", "nobody", "-c", str(cfg)]) == 1
    assert "no sessions for user 'nobody'" in capsys.readouterr().err
    assert await _run(["sessions", "revoke", "-c", str(cfg)]) == 1


async def _run(argv: list[str]) -> int:
    import asyncio

    return await asyncio.to_thread(main, argv)
