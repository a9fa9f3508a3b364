"""The ``requestState`` of a 2026-07-28 ``input_required`` answer: sealed by Keyturn, opened only by Keyturn.

MCP 2026-07-28 (basic/patterns/mrtr) makes ``requestState`` attacker-controlled input: a server whose
state influences authorization MUST protect its integrity and reject what fails verification, and
SHOULD bind it to the principal, a short expiry and the originating request. Keyturn's state is
AES-256-GCM (``cryptography``'s AESGCM) under a key derived with HKDF from the engine's default root
key (``Keyring.derive_key``), and binds, as associated data, the end user, the caller (API key id
or client), the tool and the SHA-256 digest of the canonical arguments; the expiry is inside the
sealed payload. A state presented for another user, caller, tool or arguments, after its expiry,
or changed by one byte, does not open: ``RequestStateError``. Single use is not promised (the spec
says these measures do not give it); a replay within the expiry only asks again or runs the very
call the same user already authorized.

Wire form: ``v1.<key id>.<base64url(nonce | ciphertext | tag)>`` (the key id names the root key the
state key was derived from, so a root key rotation does not break states already handed out).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PURPOSE = "mcp-request-state"
VERSION = "v1"
NONCE_BYTES = 12
MAX_STATE = 4096  # characters: a state longer than this was not made here


class RequestStateError(ValueError):
    """The presented ``requestState`` is not one this engine sealed for this very request."""


@dataclasses.dataclass(frozen=True)
class Binding:
    """What a state is bound to: it opens only when every field is the same again."""

    user: str
    caller: str
    tool: str
    arguments_sha256: str

    def aad(self) -> bytes:
        return json.dumps(
            ["keyturn:mcp:request-state", VERSION, self.user, self.caller, self.tool, self.arguments_sha256],
            separators=(",", ":"),
        ).encode()


def arguments_digest(arguments: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the arguments (sorted keys, no whitespace)."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


KeySource = Callable[[str | None], tuple[str, bytes]]  # key id or None (default) -> (key id, 32 bytes)


def fixed_key(key: bytes, key_id: str = "local") -> KeySource:
    """A key source with one key (a standalone server, tests)."""

    def source(wanted: str | None) -> tuple[str, bytes]:
        if wanted not in (None, key_id):
            raise KeyError(wanted)
        return key_id, key

    return source


class RequestStateSealer:
    def __init__(
        self, keys: KeySource, *, ttl: float = 600.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = keys
        self.ttl = ttl
        self.clock = clock

    def seal(self, binding: Binding, payload: dict[str, Any]) -> str:
        """A state carrying ``payload`` (JSON), bound to ``binding``, good for ``ttl`` seconds."""
        key_id, key = self.keys(None)
        body = json.dumps({"exp": int(self.clock() + self.ttl), "p": payload}, separators=(",", ":"))
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, body.encode(), binding.aad())
        return f"{VERSION}.{key_id}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(self, state: Any, binding: Binding) -> dict[str, Any]:
        """The payload of a state sealed here for ``binding`` and not expired, else ``RequestStateError``."""
        if not isinstance(state, str) or len(state) > MAX_STATE:
            raise RequestStateError("requestState is not valid for this request")
        version, _, rest = state.partition(".")
        key_id, _, blob = rest.partition(".")
        if version != VERSION or not key_id or not blob:
            raise RequestStateError("requestState is not valid for this request")
        try:
            _, key = self.keys(key_id)
            raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
            if base64.urlsafe_b64encode(raw).decode().rstrip("=") != blob:  # one canonical spelling only
                raise ValueError("non-canonical base64")
            body = AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], binding.aad())
            data = json.loads(body)
        except (KeyError, ValueError, binascii.Error, InvalidTag):
            raise RequestStateError("requestState is not valid for this request") from None
        if not isinstance(data, dict) or not isinstance(data.get("exp"), int):
            raise RequestStateError("requestState is not valid for this request")
        if data["exp"] < self.clock():
            raise RequestStateError("requestState has expired: call the tool again without it")
        payload = data.get("p")
        return payload if isinstance(payload, dict) else {}
