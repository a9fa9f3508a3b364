"""keyturn keys generate|rotate against a real SQLite database."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.crypto.cipher import Keyring, generate_key
from engine.store.store import Store
from tests.plugins.store import store_flow, store_grant


def write_config(tmp_path: Path, keys: str) -> Path:
    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        f"api: {{development: true}}\nstorage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}\n"
        f"security: {{root_keys: [{keys}]}}\n"
    )
    return cfg


def test_keys_generate(capsys: pytest.CaptureFixture[str]) -> None:
    """keys generate prints base64 of 32 random bytes, different each time."""
    assert main(["keys", "generate"]) == 0
    assert main(["keys", "generate"]) == 0
    first, second = capsys.readouterr().out.split()
    assert len(base64.b64decode(first)) == 32 and first != second


def test_keys_rotate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys rotate with a new default key re-encrypts every value; the old key can then be dropped."""
    k1, k2 = generate_key(), generate_key()
    url = f"sqlite+aiosqlite:///{tmp_path}/kt.db"

    async def seed() -> None:
        store = await Store.open(url, Keyring({"k1": base64.b64decode(k1)}, "k1"))
        for i in range(3):
            await store_grant(store, f"u{i}", access_token=f"at-{i}")
        await store.close()

    asyncio.run(seed())
    cfg = write_config(tmp_path, f"{{id: k1, value: '{k1}'}}, {{id: k2, default: true, value: '{k2}'}}")
    assert main(["keys", "rotate", "--batch-size", "2", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "re-encrypted 9 values under key 'k2'; 0 left" in out

    async def read_with_k2_only() -> str:
        store = await Store.open(url, Keyring({"k2": base64.b64decode(k2)}, "k2"))
        try:
            g = await store.grants.find("u2", "p")
            assert g is not None
            return g.access_token
        finally:
            await store.close()

    assert asyncio.run(read_with_k2_only()) == "at-2"


def test_wrong_key_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A database holding values under a key that is not configured is refused with that key's id."""
    cfg = write_config(tmp_path, f"{{id: old, value: '{generate_key()}'}}")
    assert main(["db", "upgrade", "-c", str(cfg)]) == 0

    async def seal() -> None:
        store = await Store.open(
            f"sqlite+aiosqlite:///{tmp_path}/kt.db", Keyring({"old": os.urandom(32)}, "old")
        )
        await store_flow(store)
        await store.close()

    asyncio.run(seal())
    cfg = write_config(tmp_path, f"{{id: new, value: '{generate_key()}'}}")
    assert main(["keys", "rotate", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "'old'" in err and "Traceback" not in err
