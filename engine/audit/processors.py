"""The audit pipeline's structlog processors: settings in ``__init__``, work in ``__call__``.

An audit record passes, in order: :class:`EventAllowlist` (a name not in
:data:`engine.audit.events.EVENTS` is a programming error), :class:`UserHasher` (``user_id`` becomes
``user_ref``), the shared :class:`engine.logs.Redactor`, then the sinks.

``user_ref`` is ``HMAC-SHA256(salt, user_id)`` in hex, with one salt per installation: the same
user always has the same reference (``keyturn audit hash USER`` finds their lines) and the
reference cannot be turned back into the id without the salt. The engine keeps that salt in its
store; its text form (environment, files) is hex.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from engine.audit.events import EVENTS, OUTCOMES
from engine.errors import ConfigError

MIN_SALT_BYTES = 16


def new_salt() -> bytes:
    """A fresh installation salt (32 random bytes)."""
    return secrets.token_bytes(32)


def parse_salt(text: str, *, where: str = "salt") -> bytes:
    """The salt from its hex text form; ``where`` names the source in the error."""
    value = text.strip()
    try:
        salt = bytes.fromhex(value)
    except ValueError:
        raise ConfigError(f"{where} is not hex (expected {2 * MIN_SALT_BYTES} or more hex digits)") from None
    check_salt(salt, where=where)
    return salt


def check_salt(salt: bytes, *, where: str = "salt") -> None:
    if len(salt) < MIN_SALT_BYTES:
        raise ConfigError(f"{where} is too short: {len(salt)} bytes, need at least {MIN_SALT_BYTES}")


def user_ref(salt: bytes, user_id: str) -> str:
    """The audit reference of ``user_id``: HMAC-SHA256(salt, user_id) as 64 hex digits."""
    return hmac.new(salt, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


class EventAllowlist:
    """Refuse (``ValueError``) an event name not in ``events`` or an outcome not in ``outcomes``."""

    def __init__(self, events: Iterable[str] = EVENTS, outcomes: Iterable[str] = OUTCOMES) -> None:
        self.events = frozenset(events)
        self.outcomes = frozenset(outcomes)

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        event = event_dict.get("event")
        if event not in self.events:
            raise ValueError(f"unknown audit event {event!r}; add it to engine.audit.events.EVENTS")
        outcome = event_dict.get("outcome")
        if outcome not in self.outcomes:
            raise ValueError(
                f"unknown audit outcome {outcome!r} for {event}; expected one of {sorted(self.outcomes)}"
            )
        return event_dict


class UserHasher:
    """Replace ``user_id`` with ``user_ref``; keep the clear id only when ``include_user_id``."""

    def __init__(self, salt: bytes, *, include_user_id: bool = False) -> None:
        check_salt(salt)
        self._salt = salt
        self.include_user_id = include_user_id

    def __repr__(self) -> str:  # never show the salt
        return f"UserHasher(include_user_id={self.include_user_id})"

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        user_id: Any = event_dict.pop("user_id", None)
        if user_id is not None:
            event_dict["user_ref"] = user_ref(self._salt, str(user_id))
            if self.include_user_id:
                event_dict["user_id"] = str(user_id)
        return event_dict
