"""engine.crypto.keys: the development key file, made once and read back."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from engine.crypto.keys import DEV_KEY_FILE, read_or_create_dev_key
from engine.errors import ConfigError


def test_dev_key_made_once_mode_0600(tmp_path: Path) -> None:
    """The first call writes a new key file (mode 0600, folders made); later calls read the same key."""
    path = tmp_path / "sub" / DEV_KEY_FILE
    first = read_or_create_dev_key(path)
    assert len(first) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_or_create_dev_key(path) == first


def test_unreadable_dev_key_file_named(tmp_path: Path) -> None:
    """A key file that holds no valid key is refused, naming the file and leaving it as it is."""
    path = tmp_path / DEV_KEY_FILE
    path.write_text("garbage")
    with pytest.raises(ConfigError, match=DEV_KEY_FILE):
        read_or_create_dev_key(path)
    assert path.read_text() == "garbage"
