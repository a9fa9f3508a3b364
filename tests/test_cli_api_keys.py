"""keyturn api-keys create|list|revoke against a real SQLite database."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.config.keyring import keyring_from_config
from engine.store.store import Store


def write_config(tmp_path: Path) -> Path:
    from engine.crypto.cipher import generate_key

    cfg = tmp_path / "engine.yaml"
    cfg.write_text(
        f"api: {{development: true}}\nstorage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}\n"
        f"security: {{root_keys: [{{id: k1, value: '{generate_key()}'}}]}}\n"
    )
    return cfg


def verify(cfg: Path, plain: str) -> bool:
    from engine.providers.load import load_config

    async def go() -> bool:
        loaded = load_config(cfg)
        keyring = keyring_from_config(loaded.config, loaded.base_dir)
        store = await Store.open(loaded.config.storage.url or "", keyring)
        try:
            return await store.api_keys.verify(plain) is not None
        finally:
            await store.close()

    return asyncio.run(go())


def test_create_list_revoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """create shows the key once and it verifies; list never shows it; revoke by name works once."""
    cfg = write_config(tmp_path)
    assert main(["api-keys", "create", "ci", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out.splitlines()
    plain = out[0]
    assert plain.startswith("kt_") and "not shown again" in out[1]
    assert verify(cfg, plain)
    assert main(["api-keys", "list", "-c", str(cfg)]) == 0
    listing = capsys.readouterr().out
    assert "ci" in listing and "active" in listing and plain.split("_", 2)[2] not in listing
    assert main(["api-keys", "revoke", "ci", "-c", str(cfg)]) == 0
    assert not verify(cfg, plain)
    assert main(["api-keys", "revoke", "ci", "-c", str(cfg)]) == 1
    assert "no active API key 'ci'" in capsys.readouterr().err
    assert main(["api-keys", "list", "-c", str(cfg)]) == 0
    assert "revoked" in capsys.readouterr().out


def test_duplicate_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A second key with a name in use exits 1 with one line naming it."""
    cfg = write_config(tmp_path)
    assert main(["api-keys", "create", "ci", "-c", str(cfg)]) == 0
    assert main(["api-keys", "create", "ci", "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "'ci' already exists" in err and "Traceback" not in err


def test_create_with_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--tools (comma-separated or repeated) limits the key; list shows the globs; an empty one exits 1."""
    from engine.providers.load import load_config

    cfg = write_config(tmp_path)
    assert main(["api-keys", "create", "mailer", "--tools", "Gmail.*,*.Delete*", "--tools", "Notes.Add",
                 "-c", str(cfg)]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert "limited to tools Gmail.*, *.Delete*, Notes.Add" in out[1]

    async def tools() -> Any:
        loaded = load_config(cfg)
        keyring = keyring_from_config(loaded.config, tmp_path)
        store = await Store.open(loaded.config.storage.url or "", keyring)
        try:
            record = await store.api_keys.verify(out[0])
            return record.tools if record else "no key"
        finally:
            await store.close()

    assert asyncio.run(tools()) == ("Gmail.*", "*.Delete*", "Notes.Add")
    assert main(["api-keys", "list", "-c", str(cfg)]) == 0
    assert "tools Gmail.*,*.Delete*,Notes.Add" in capsys.readouterr().out
    assert main(["api-keys", "create", "none", "--tools", " , ", "-c", str(cfg)]) == 1
    assert "--tools needs at least one glob" in capsys.readouterr().err
