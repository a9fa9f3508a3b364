"""engine.mcp.request_state: a requestState opens only for the request, user, caller and time sealed for."""

from __future__ import annotations

import base64

import pytest

from engine.mcp.request_state import (
    Binding,
    RequestStateError,
    RequestStateSealer,
    arguments_digest,
    fixed_key,
)

KEY = b"k" * 32
BOUND = Binding("alice@example.test", "key:abc", "Echo_WhoAmI", arguments_digest({"a": 1, "b": [2]}))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def sealer(clock: Clock | None = None, key: bytes = KEY) -> RequestStateSealer:
    return RequestStateSealer(fixed_key(key), ttl=60, clock=clock or Clock())


def test_round_trip_and_opaque() -> None:
    """A sealed state opens for the same binding and does not show its payload or binding."""
    s = sealer()
    state = s.seal(BOUND, {"flow": "fl_123"})
    assert s.open(state, BOUND) == {"flow": "fl_123"}
    assert "fl_123" not in state and "alice" not in state and state.startswith("v1.local.")


def test_argument_digest_is_canonical() -> None:
    """The same arguments in another key order give the same digest; other arguments another."""
    assert arguments_digest({"b": [2], "a": 1}) == BOUND.arguments_sha256
    assert arguments_digest({"a": 2, "b": [2]}) != BOUND.arguments_sha256


@pytest.mark.parametrize(
    "other",
    [
        Binding("mallory@example.test", BOUND.caller, BOUND.tool, BOUND.arguments_sha256),
        Binding(BOUND.user, "key:other", BOUND.tool, BOUND.arguments_sha256),
        Binding(BOUND.user, BOUND.caller, "Echo_Say", BOUND.arguments_sha256),
        Binding(BOUND.user, BOUND.caller, BOUND.tool, arguments_digest({"a": 2})),
    ],
    ids=["other-user", "other-caller", "other-tool", "other-arguments"],
)
def test_foreign_binding_refused(other: Binding) -> None:
    """Another user's, caller's, tool's or arguments' state does not open."""
    s = sealer()
    with pytest.raises(RequestStateError):
        s.open(s.seal(BOUND, {}), other)


def test_every_changed_byte_refused() -> None:
    """Changing any one byte of the sealed part (or its key id) is refused."""
    s = sealer()
    state = s.seal(BOUND, {"flow": "fl_1"})
    prefix, blob = state.rsplit(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4)))
    for i in range(len(raw)):
        changed = bytearray(raw)
        changed[i] ^= 0x01
        forged = f"{prefix}.{base64.urlsafe_b64encode(bytes(changed)).decode().rstrip('=')}"
        with pytest.raises(RequestStateError):
            s.open(forged, BOUND)
    for forged in (state.replace("v1.local.", "v1.other."), state + "A", state[:-1], "", "v1", 7, None):
        with pytest.raises(RequestStateError):
            s.open(forged, BOUND)


def test_expired_refused() -> None:
    """A state presented after its expiry is refused, naming the expiry."""
    clock = Clock()
    s = sealer(clock)
    state = s.seal(BOUND, {})
    clock.now += 61
    with pytest.raises(RequestStateError, match="expired"):
        s.open(state, BOUND)


def test_another_engines_key_refused() -> None:
    """A state sealed under another root key does not open here."""
    with pytest.raises(RequestStateError):
        sealer().open(sealer(key=b"x" * 32).seal(BOUND, {}), BOUND)
