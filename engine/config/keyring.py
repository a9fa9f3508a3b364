"""The keyring ``security.root_keys`` describes, or a development key generated once beside the database.

Config is the caller here: :mod:`engine.crypto` knows no configuration, it is handed keys.
"""

from __future__ import annotations

from pathlib import Path

from engine.config.model import Config
from engine.crypto.cipher import Keyring, decode_key
from engine.crypto.keys import DEV_KEY_FILE, DEV_KEY_ID, read_or_create_dev_key
from engine.errors import ConfigError


def dev_key_path(config: Config, base_dir: Path) -> Path:
    """Where the development key lives: beside a SQLite database, else beside engine.yaml."""
    url = config.storage.url or ""
    if url.startswith("sqlite") and ":///" in url:
        db_path = url.split(":///", 1)[1]
        if db_path and db_path != ":memory:":
            return Path(db_path).parent / DEV_KEY_FILE
    return base_dir / DEV_KEY_FILE


def keyring_from_config(config: Config, base_dir: Path) -> Keyring:
    """Build the keyring; in development mode with no keys, read or create the development key file."""
    keys: dict[str, bytes] = {}
    default_id: str | None = None
    for i, entry in enumerate(config.security.root_keys):
        value = entry.value
        if value is None and entry.value_path is not None:
            try:
                value = (base_dir / entry.value_path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {entry.value_path!r}: {exc.strerror}",
                    path=f"security.root_keys[{i}].value_path",
                ) from None
        if value is None:
            raise ConfigError("give value or value_path", path=f"security.root_keys[{i}]")
        try:
            keys[entry.id] = decode_key(value)
        except ValueError as exc:
            raise ConfigError(str(exc), path=f"security.root_keys[{i}].value") from None
        if entry.default or (default_id is None and len(config.security.root_keys) == 1):
            default_id = entry.id
    if keys:
        assert default_id is not None
        return Keyring(keys, default_id)
    if not config.api.development:
        raise ConfigError("at least one root key is required", path="security.root_keys")
    return Keyring({DEV_KEY_ID: read_or_create_dev_key(dev_key_path(config, base_dir))}, DEV_KEY_ID)
