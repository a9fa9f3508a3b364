"""engine.audit.processors: the allowlist, user hashing and salts, as structlog processors."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import structlog
from structlog.testing import capture_logs

from engine.audit.processors import EventAllowlist, UserHasher, new_salt, parse_salt, user_ref
from engine.errors import ConfigError
from engine.logs import Redactor

SALT = bytes(range(32))


def test_user_ref_is_hmac_sha256_hex() -> None:
    """user_ref is HMAC-SHA256(salt, user id) in hex, stable per salt and different across salts."""
    expected = hmac.new(SALT, b"alice@example.com", hashlib.sha256).hexdigest()
    assert user_ref(SALT, "alice@example.com") == expected
    assert len(expected) == 64
    assert user_ref(new_salt(), "alice@example.com") != expected


def test_processors_hash_user_and_check_names() -> None:
    """Through structlog, user_id becomes user_ref, the clear id is gone, a token is masked."""
    procs = [EventAllowlist(), UserHasher(SALT), Redactor()]
    with capture_logs(processors=procs) as logs:
        structlog.get_logger().info("flow.started", outcome="success", user_id="alice", access_token="at-1")
    [entry] = logs
    assert entry["user_ref"] == user_ref(SALT, "alice")
    assert "user_id" not in entry
    assert entry["access_token"] == "[redacted]"
    assert "alice" not in repr(entry)


def test_include_user_id_keeps_clear_id() -> None:
    """With include_user_id the record carries both user_ref and user_id."""
    out = UserHasher(SALT, include_user_id=True)(None, "info", {"event": "x", "user_id": "bob"})
    assert out == {"event": "x", "user_ref": user_ref(SALT, "bob"), "user_id": "bob"}


def test_record_without_user_is_unchanged() -> None:
    """A record with no user_id gets no user_ref."""
    assert UserHasher(SALT)(None, "info", {"event": "config.loaded"}) == {"event": "config.loaded"}


def test_unknown_event_and_outcome_are_refused() -> None:
    """An event name not in EVENTS or an outcome not in OUTCOMES raises ValueError naming it."""
    allow = EventAllowlist()
    with pytest.raises(ValueError, match=r"'flow\.startd'"):
        allow(None, "info", {"event": "flow.startd", "outcome": "success"})
    with pytest.raises(ValueError, match="'ok'"):
        allow(None, "info", {"event": "flow.started", "outcome": "ok"})


def test_salt_parsing_and_length() -> None:
    """A salt is read from hex; non-hex or short salts are refused naming the source, never the value."""
    assert parse_salt(SALT.hex() + "\n") == SALT
    with pytest.raises(ConfigError, match="KEYTURN_AUDIT_SALT is not hex"):
        parse_salt("not-hex-at-all", where="KEYTURN_AUDIT_SALT")
    with pytest.raises(ConfigError, match="too short: 4 bytes") as info:
        parse_salt("deadbeef")
    assert "deadbeef" not in str(info.value)
    with pytest.raises(ConfigError):
        UserHasher(b"short")


def test_hasher_repr_hides_salt() -> None:
    """The hasher's repr never shows the salt."""
    assert SALT.hex() not in repr(UserHasher(SALT)) and repr(SALT) not in repr(UserHasher(SALT))
