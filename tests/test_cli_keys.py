"""keyturn keys / db / api-keys commands against a real SQLite database."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.crypto.cipher import Keyring, generate_key
from engine.store.store import Store


def write_config(tmp_path: Path, keys: str) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        f"api: {{development: true}}\nstorage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}\n"
        f"security: {{root_keys: [{keys}]}}\n"
    )
    return cfg


def test_keys_generate(capsys: pytest.CaptureFixture[str]) -> None:
    """keys generate prints base64 of 32 random bytes."""
    assert main(["keys", "generate"]) == 0
    assert len(base64.b64decode(capsys.readouterr().out.strip())) == 32


def test_db_upgrade_and_current(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """db current on an empty database exits 1; after db upgrade it matches the code."""
    main(["keys", "generate"])
    key = capsys.readouterr().out.strip()
    cfg = write_config(tmp_path, f"{{id: k1, value: '{key}'}}")
    assert main(["db", "current", "-c", str(cfg)]) == 1
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0
    assert main(["db", "current", "-c", str(cfg)]) == 0


def test_api_keys_cycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """api-keys create shows the key once; list never shows it; revoke by name works once."""
    main(["keys", "generate"])
    key = capsys.readouterr().out.strip()
    cfg = write_config(tmp_path, f"{{id: k1, value: '{key}'}}")
    assert main(["api-keys", "create", "ci", "-c", str(cfg)]) == 0
    plain = capsys.readouterr().out.splitlines()[0]
    assert plain.startswith("kt_")
    assert main(["api-keys", "list", "-c", str(cfg)]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and plain not in listing and "active" in listing
    assert main(["api-keys", "revoke", "ci", "-c", str(cfg)]) == 0
    assert main(["api-keys", "revoke", "ci", "-c", str(cfg)]) == 1


def test_keys_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys rotate with a new default key re-encrypts and reports nothing left."""
    main(["keys", "generate"])
    main(["keys", "generate"])
    k1, k2 = capsys.readouterr().out.split()
    cfg = write_config(tmp_path, f"{{id: k1, value: '{k1}'}}")
    assert main(["api-keys", "create", "x", "-c", str(cfg)]) == 0
    cfg = write_config(tmp_path, f"{{id: k1, value: '{k1}'}}, {{id: k2, default: true, value: '{k2}'}}")
    assert main(["keys", "rotate", "-c", str(cfg)]) == 0
    assert "0 left" in capsys.readouterr().out


def test_wrong_key_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database holding values under a key that is not configured is refused with that key's id."""
    cfg = write_config(tmp_path, f"{{id: old, value: '{generate_key()}'}}")
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0

    async def seal() -> None:
        store = await Store.open(
            f"sqlite+aiosqlite:///{tmp_path}/kt.db", Keyring({"old": os.urandom(32)}, "old")
        )
        await store.flows.create(
            user_id="u",
            provider_id="p",
            scopes=[],
            code_verifier="v",
            nonce=None,
            redirect_uri="http://x",
            next_uri=None,
            expires_at=datetime.now(UTC),
        )
        await store.close()

    asyncio.run(seal())
    cfg = write_config(tmp_path, f"{{id: new, value: '{generate_key()}'}}")
    assert main(["api-keys", "list", "-c", str(cfg)]) == 1
    assert "'old'" in capsys.readouterr().err
