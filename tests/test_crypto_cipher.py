"""engine.crypto.cipher: AES-256-GCM barrier behaviour (Vault-style)."""

from __future__ import annotations

import base64
import os

import pytest

from engine.crypto.cipher import DecryptError, Keyring, UnknownKeyError, decode_key, generate_key

WHERE = {"table": "grants", "column": "access_token", "row_id": "gr_1"}


def ring(*ids: str, default: str | None = None) -> Keyring:
    return Keyring({i: os.urandom(32) for i in ids}, default or ids[0])


def test_ciphertext_differs_from_plaintext() -> None:
    """The stored bytes do not contain the plaintext."""
    kr = ring("k1")
    secret = b"gho_plaintext_token_value_123456"
    blob = kr.encrypt(secret, **WHERE)
    assert secret not in blob
    assert kr.decrypt(blob, **WHERE) == secret


def test_same_plaintext_encrypts_differently() -> None:
    """Two encryptions of one value differ (random nonce)."""
    kr = ring("k1")
    assert kr.encrypt(b"x", **WHERE) != kr.encrypt(b"x", **WHERE)


def test_flipped_byte_fails() -> None:
    """Flipping any one byte of the ciphertext makes decryption fail."""
    kr = ring("k1")
    blob = bytearray(kr.encrypt(b"token-value", **WHERE))
    for i in range(4, len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptError):
            kr.decrypt(bytes(tampered), **WHERE)


def test_copied_to_other_row_or_column_fails() -> None:
    """A value moved to another row, column or table does not decrypt."""
    kr = ring("k1")
    blob = kr.encrypt(b"token-value", **WHERE)
    for where in (
        {**WHERE, "row_id": "gr_2"},
        {**WHERE, "column": "refresh_token"},
        {**WHERE, "table": "flows"},
    ):
        with pytest.raises(DecryptError):
            kr.decrypt(blob, **where)


def test_relabelled_key_id_fails() -> None:
    """Changing the stored key id to another configured key fails authentication."""
    kr = Keyring({"k1": os.urandom(32), "k2": os.urandom(32)}, "k1")
    blob = kr.encrypt(b"v", **WHERE)
    relabelled = blob.replace(b"k1", b"k2", 1)
    with pytest.raises(DecryptError):
        kr.decrypt(relabelled, **WHERE)


def test_unknown_key_id() -> None:
    """A value sealed with a key that is not configured fails with unknown_key naming the key id."""
    old = ring("old")
    blob = old.encrypt(b"v", **WHERE)
    with pytest.raises(UnknownKeyError, match="'old'"):
        ring("new").decrypt(blob, **WHERE)


def test_truncated_and_garbage() -> None:
    """Truncated or foreign bytes are refused with a clear error."""
    kr = ring("k1")
    with pytest.raises(DecryptError, match="known format"):
        kr.decrypt(b"plain text", **WHERE)
    with pytest.raises(DecryptError, match="truncated"):
        kr.decrypt(kr.encrypt(b"v", **WHERE)[:10], **WHERE)


def test_bad_key_sizes_rejected() -> None:
    """Keys that are not 32 bytes are rejected, as bytes or as base64."""
    for size in (0, 16, 24, 31, 33, 64):
        with pytest.raises(ValueError, match="32 bytes"):
            Keyring({"k": b"\0" * size}, "k")
        if size:
            with pytest.raises(ValueError, match="32 bytes"):
                decode_key(base64.b64encode(b"\0" * size).decode())
    with pytest.raises(ValueError, match="base64"):
        decode_key("not*base64")


def test_generate_key_decodes() -> None:
    """generate_key gives distinct base64 strings of 32 bytes."""
    a, b = generate_key(), generate_key()
    assert a != b and len(decode_key(a)) == 32


def test_rotation_reads_old_writes_new() -> None:
    """After adding a new default key, old values still decrypt and reencrypt moves them to the new key."""
    k_old, k_new = os.urandom(32), os.urandom(32)
    before = Keyring({"k1": k_old}, "k1")
    blob = before.encrypt(b"v", **WHERE)
    after = Keyring({"k1": k_old, "k2": k_new}, "k2")
    assert after.decrypt(blob, **WHERE) == b"v"
    assert after.needs_rotation(blob)
    moved = after.reencrypt(blob, **WHERE)
    assert after.key_id_of(moved) == "k2" and not after.needs_rotation(moved)
    assert Keyring({"k2": k_new}, "k2").decrypt(moved, **WHERE) == b"v"


def test_repr_hides_keys() -> None:
    """The keyring's repr shows key ids only."""
    key = os.urandom(32)
    text = repr(Keyring({"k1": key}, "k1"))
    assert "k1" in text and base64.b64encode(key).decode() not in text


ROOT = b"k" * 32


def test_keyring_derived_keys() -> None:
    """The state key is derived per root key and purpose: stable, distinct, and never the root key."""
    ring = Keyring({"k1": ROOT, "k2": b"z" * 32}, "k1")
    assert ring.derive_key("mcp-request-state") == ring.derive_key("mcp-request-state", "k1")
    assert ring.derive_key("mcp-request-state") != ring.derive_key("other")
    assert ring.derive_key("mcp-request-state", "k2") != ring.derive_key("mcp-request-state")
    assert ROOT not in (ring.derive_key("mcp-request-state"), ring.derive_key("other"))
    assert "k1" in repr(ring) and repr(ROOT) not in repr(ring)
