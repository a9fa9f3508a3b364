"""Envelope encryption of stored secrets (see :mod:`engine.crypto.cipher`)."""

from engine.crypto.cipher import DecryptError, Keyring, UnknownKeyError, decode_key, generate_key

__all__ = ["DecryptError", "Keyring", "UnknownKeyError", "decode_key", "generate_key"]
