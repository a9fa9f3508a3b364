"""engine.config.keyring: the keyring security.root_keys describes, or the development key."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from engine.config.keyring import keyring_from_config
from engine.crypto.cipher import generate_key
from engine.crypto.keys import DEV_KEY_FILE
from engine.errors import ConfigError
from engine.providers.load import load_text


def test_configured_keys_and_default(tmp_path: Path) -> None:
    """The key marked default encrypts; all configured keys are loaded."""
    a, b = generate_key(), generate_key()
    loaded = load_text(
        f"security: {{root_keys: [{{id: a, value: '{a}'}}, {{id: b, default: true, value: '{b}'}}]}}\n",
        env={},
        base_dir=tmp_path,
    )
    kr = keyring_from_config(loaded.config, tmp_path)
    assert kr.default_id == "b" and kr.key_ids == {"a", "b"}


def test_value_path(tmp_path: Path) -> None:
    """A key can be read from value_path."""
    (tmp_path / "root.key").write_text(generate_key() + "\n")
    loaded = load_text("security: {root_keys: [{id: k, value_path: root.key}]}\n", env={}, base_dir=tmp_path)
    assert keyring_from_config(loaded.config, tmp_path).default_id == "k"


def test_dev_key_generated_once_mode_0600(tmp_path: Path) -> None:
    """In development mode without keys, one key file is created beside the database with mode 0600."""
    loaded = load_text("api: {development: true}\n", env={}, base_dir=tmp_path)
    first = keyring_from_config(loaded.config, tmp_path)
    path = tmp_path / DEV_KEY_FILE
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    blob = first.encrypt(b"v", table="t", column="c", row_id="1")
    second = keyring_from_config(loaded.config, tmp_path)
    assert second.decrypt(blob, table="t", column="c", row_id="1") == b"v"


def test_corrupt_dev_key_file_refused(tmp_path: Path) -> None:
    """A development key file that is not a valid key stops startup with the file named."""
    (tmp_path / DEV_KEY_FILE).write_text("garbage")
    loaded = load_text("api: {development: true}\n", env={}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=DEV_KEY_FILE):
        keyring_from_config(loaded.config, tmp_path)


def test_bad_key_names_its_path_not_its_value(tmp_path: Path) -> None:
    """A key read from value_path that is not base64 of 32 bytes is refused at its path, without the value."""
    (tmp_path / "root.key").write_text("c2hvcnQ=\n")  # "short"
    loaded = load_text(
        f"security: {{root_keys: [{{id: k, value: '{generate_key()}'}}]}}\n", env={}, base_dir=tmp_path
    )
    entry = dataclasses.replace(loaded.config.security.root_keys[0], value=None, value_path="root.key")
    config = dataclasses.replace(
        loaded.config, security=dataclasses.replace(loaded.config.security, root_keys=(entry,))
    )
    with pytest.raises(ConfigError, match="32 bytes") as info:
        keyring_from_config(config, tmp_path)
    assert info.value.path == "security.root_keys[0].value" and "c2hvcnQ" not in str(info.value)
