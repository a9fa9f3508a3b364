"""The development key: generated once into a file (mode 0600), read back on every later start."""

from __future__ import annotations

import os
from pathlib import Path

import structlog

from engine.crypto.cipher import decode_key, generate_key
from engine.errors import ConfigError

log = structlog.get_logger("keyturn.crypto")

DEV_KEY_ID = "dev"
DEV_KEY_FILE = "keyturn-dev.key"


def read_or_create_dev_key(path: Path) -> bytes:
    """The key in ``path``, or a new one written there first (never replaced: values depend on it)."""
    if path.exists():
        try:
            return decode_key(path.read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"development key file {str(path)!r} is unreadable: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    value = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value + "\n")
    log.warning(
        "development_key_generated",
        path=str(path),
        detail="DEVELOPMENT ONLY: tokens are encrypted with a key stored beside the database; "
        "configure security.root_keys (keyturn keys generate) for production",
    )
    return decode_key(value)
