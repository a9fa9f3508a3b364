"""Envelope encryption of stored secrets: AES-256-GCM with a key id and associated data.

A stored value is one byte string::

    0x01 | len(key_id) (1 byte) | key_id (ASCII) | nonce (12 random bytes) | ciphertext + 16-byte tag

The associated data binds the value to where it lives (``table``, ``column``, ``row_id``) and to
its key id, so a value copied to another row or column, or relabelled with another key id, fails
to decrypt. The default key encrypts; every configured key decrypts (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from engine.errors import StorageError

VERSION = 1
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class DecryptError(StorageError):
    """A stored value did not decrypt: tampered, moved, or sealed with a key that is not configured."""

    error = "decrypt_failed"


class UnknownKeyError(DecryptError):
    error = "unknown_key"


class WrongKeyError(DecryptError):
    """A configured key id holds another key than the one the database's values were sealed with."""

    error = "wrong_key"


def generate_key() -> str:
    """A new root key: the standard base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_key(value: str) -> bytes:
    """Decode a base64 root key, refusing anything but 32 bytes (the message never holds the value)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        raise ValueError("root key is not valid base64 (expected base64 of 32 random bytes)") from None
    if len(raw) != KEY_BYTES:
        raise ValueError(f"root key must decode to 32 bytes for AES-256, got {len(raw)}")
    return raw


def _check_value(key_id: str, key: bytes) -> str:
    """HMAC-SHA256 of a fixed label under the key: equal for the same key, says nothing about it."""
    return hmac.new(key, f"keyturn:key-check:v{VERSION}|{key_id}".encode(), hashlib.sha256).hexdigest()


def _derive_info(purpose: str, key_id: str) -> bytes:
    return f"keyturn:derive:v{VERSION}|{purpose}|{key_id}".encode()


def _aad(table: str, column: str, row_id: str, key_id: str) -> bytes:
    return f"keyturn:v{VERSION}|{table}|{column}|{row_id}|{key_id}".encode()


class Keyring:
    """The configured root keys; ``default_id`` names the one that encrypts."""

    def __init__(self, keys: Mapping[str, bytes], default_id: str) -> None:
        if not keys:
            raise ValueError("at least one root key is required")
        for key_id, key in keys.items():
            if not _KEY_ID.match(key_id):
                raise ValueError(f"invalid key id {key_id!r}")
            if len(key) != KEY_BYTES:
                raise ValueError(f"root key {key_id!r} must be 32 bytes, got {len(key)}")
        if default_id not in keys:
            raise ValueError(f"default key {default_id!r} is not among the keys")
        self._aead = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._keys = dict(keys)  # only for derive_key: never logged, never returned
        self._checks = {key_id: _check_value(key_id, key) for key_id, key in keys.items()}
        self.default_id = default_id

    def keeps(self, other: Keyring) -> bool:
        """Whether this keyring holds every key of ``other``, each with the same value."""
        return all(
            hmac.compare_digest(self._checks.get(key_id, ""), check)
            for key_id, check in other._checks.items()
        )

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._aead)

    def check_value(self, key_id: str) -> str:
        """A value identifying the key under ``key_id`` without revealing it (stored to catch a wrong key)."""
        return self._checks[key_id]

    def derive_key(self, purpose: str, key_id: str | None = None) -> bytes:
        """A 32-byte key for ``purpose`` derived (HKDF-SHA256) from a root key (default: the default one).

        Derived keys are independent of the root key's use for stored values and of each other.
        """
        kid = key_id or self.default_id
        hkdf = HKDF(algorithm=SHA256(), length=KEY_BYTES, salt=None, info=_derive_info(purpose, kid))
        return hkdf.derive(self._keys[kid])

    def __repr__(self) -> str:
        return f"Keyring(key_ids={sorted(self._aead)!r}, default_id={self.default_id!r})"

    def encrypt(self, plaintext: bytes, *, table: str, column: str, row_id: str) -> bytes:
        key_id = self.default_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead[key_id].encrypt(nonce, plaintext, _aad(table, column, row_id, key_id))
        kid = key_id.encode("ascii")
        return bytes([VERSION, len(kid)]) + kid + nonce + sealed

    def decrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> bytes:
        key_id, nonce, sealed = self._split(blob, f"{table}.{column}")
        aead = self._aead.get(key_id)
        if aead is None:
            raise UnknownKeyError(
                f"{table}.{column} of row {row_id} is encrypted with key {key_id!r}, which is not in "
                "security.root_keys"
            )
        try:
            return aead.decrypt(nonce, sealed, _aad(table, column, row_id, key_id))
        except InvalidTag:
            raise DecryptError(
                f"{table}.{column} of row {row_id} failed authentication "
                "(tampered, or copied from another row)"
            ) from None

    def encrypt_str(self, text: str, *, table: str, column: str, row_id: str) -> bytes:
        return self.encrypt(text.encode("utf-8"), table=table, column=column, row_id=row_id)

    def decrypt_str(self, blob: bytes, *, table: str, column: str, row_id: str) -> str:
        return self.decrypt(blob, table=table, column=column, row_id=row_id).decode("utf-8")

    def key_id_of(self, blob: bytes) -> str:
        return self._split(blob, "value")[0]

    def needs_rotation(self, blob: bytes) -> bool:
        return self.key_id_of(blob) != self.default_id

    def reencrypt(self, blob: bytes, *, table: str, column: str, row_id: str) -> bytes:
        """The same plaintext sealed under the default key (for ``keyturn keys rotate``)."""
        plain = self.decrypt(blob, table=table, column=column, row_id=row_id)
        return self.encrypt(plain, table=table, column=column, row_id=row_id)

    @staticmethod
    def _split(blob: bytes, where: str) -> tuple[str, bytes, bytes]:
        if len(blob) < 2 or blob[0] != VERSION:
            raise DecryptError(f"{where}: not an encrypted value of a known format")
        n = blob[1]
        if len(blob) < 2 + n + NONCE_BYTES + 16:
            raise DecryptError(f"{where}: encrypted value is truncated")
        try:
            key_id = blob[2 : 2 + n].decode("ascii")
        except UnicodeDecodeError:
            raise DecryptError(f"{where}: encrypted value has a corrupt key id") from None
        nonce = blob[2 + n : 2 + n + NONCE_BYTES]
        return key_id, nonce, blob[2 + n + NONCE_BYTES :]
