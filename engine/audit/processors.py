"""The audit pipeline's structlog processors: settings in ``__init__``, work in ``__call__``.

An audit record passes, in order: :class:`EventAllowlist` (a name not in
:data:`engine.audit.events.EVENTS` is a programming error), :class:`UserHasher` (``user_id`` becomes
``user_ref``), the shared :class:`engine.logs.Redactor` (as :class:`CachedRedactor`), then the sinks.
The pipeline calls them directly (no structlog logger in between); :func:`stamp_time` is its clock.

``user_ref`` is ``HMAC-SHA256(salt, user_id)`` in hex, with one salt per installation: the same
user always has the same reference (``keyturn audit hash USER`` finds their lines) and the
reference cannot be turned back into the id without the salt. The engine keeps that salt in its
store; its text form (environment, files) is hex.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from typing import Any

from structlog.typing import EventDict, WrappedLogger

from engine.audit.events import EVENTS, OUTCOMES
from engine.errors import ConfigError
from engine.logs import Redactor

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
    return hmac.digest(salt, user_id.encode("utf-8"), hashlib.sha256).hex()


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
        self._refs: dict[str, str] = {}  # user id -> reference, for the users seen lately

    def __repr__(self) -> str:  # never show the salt
        return f"UserHasher(include_user_id={self.include_user_id})"

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        user_id: Any = event_dict.pop("user_id", None)
        if user_id is not None:
            text = str(user_id)
            ref = self._refs.get(text)
            if ref is None:
                if len(self._refs) >= 4096:
                    self._refs.clear()
                ref = self._refs[text] = user_ref(self._salt, text)
            event_dict["user_ref"] = ref
            if self.include_user_id:
                event_dict["user_id"] = str(user_id)
        return event_dict


class CachedRedactor(Redactor):
    """:class:`engine.logs.Redactor` with its answers for text values remembered.

    Masking a text is a pure function of (key, text), and audit records repeat the same few texts
    (tool, provider and worker names, a user's reference, the request's id); the regular expressions
    run once per distinct pair. At most ``size`` pairs of texts up to ``longest`` characters are kept.
    The top-level ``time`` is passed as it is: the pipeline's own :func:`stamp_time` wrote it
    (digits and ``-:.TZ``, which no pattern masks), and it differs in every record.
    """

    def __init__(self, *, size: int = 4096, longest: int = 256) -> None:
        super().__init__()
        self._size, self._longest = size, longest
        self._texts: dict[tuple[str, str], str] = {}
        self._keys: dict[str, bool] = {}

    def secret_key(self, key: str) -> bool:
        known = self._keys.get(key)
        if known is None:
            if len(self._keys) >= self._size:
                self._keys.clear()
            known = self._keys[key] = super().secret_key(key)
        return known

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        for key in list(event_dict):
            if key != "time":  # the record's own stamp (top level only)
                event_dict[key] = self.value(key, event_dict[key])
        return event_dict

    def value(self, key: str, value: Any) -> Any:
        if type(value) is not str or len(value) > self._longest:
            return super().value(key, value)
        pair = (key, value)
        masked = self._texts.get(pair)
        if masked is None:
            if len(self._texts) >= self._size:
                self._texts.clear()
            masked = self._texts[pair] = super().value(key, value)
        return masked


_second: int = -1
_prefix: str = ""


def stamp_time(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """``time``: now in UTC as ``structlog.processors.TimeStamper(fmt="iso", utc=True)`` writes it
    (``2024-01-01T00:00:00.123456Z``, no fraction at a whole second), the date formatted once a second."""
    global _second, _prefix
    second, nanos = divmod(time.time_ns(), 1_000_000_000)
    if second != _second:
        _prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _second = second
    micros = nanos // 1000
    event_dict["time"] = f"{_prefix}.{micros:06d}Z" if micros else f"{_prefix}Z"
    return event_dict
