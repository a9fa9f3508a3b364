"""Sliding-window limiter."""

from __future__ import annotations

import pytest

from engine.errors import RateLimited
from engine.ratelimit import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_up_to_the_limit_then_refuses_with_retry_after() -> None:
    """The sixth attempt inside the window is refused with a Retry-After until the oldest one leaves."""
    clock = Clock()
    limiter = SlidingWindowLimiter(5, 60, clock=clock)
    for _ in range(5):
        limiter.hit("u")
    with pytest.raises(RateLimited) as info:
        limiter.hit("u")
    assert 59 <= info.value.retry_after <= 60
    clock.now += 61
    limiter.hit("u")


def test_keys_are_independent() -> None:
    """One key's attempts do not count against another's."""
    limiter = SlidingWindowLimiter(1, 60, clock=Clock())
    limiter.hit("a")
    limiter.hit("b")
    with pytest.raises(RateLimited):
        limiter.hit("a")


def test_memory_is_bounded() -> None:
    """The number of tracked keys never exceeds max_keys."""
    limiter = SlidingWindowLimiter(1, 60, max_keys=10, clock=Clock())
    for i in range(100):
        limiter.hit(i)
    assert len(limiter._events) <= 10


def test_retry_after_is_zero_when_free() -> None:
    """retry_after is 0 for a key under its limit."""
    limiter = SlidingWindowLimiter(2, 60, clock=Clock())
    limiter.hit("k")
    assert limiter.retry_after("k") == 0.0


def test_refund_takes_back_the_latest_event() -> None:
    """refund un-counts one event, so a key that was at the limit may act once more."""
    limiter = SlidingWindowLimiter(2, 60)
    limiter.hit("k")
    limiter.hit("k")
    assert limiter.retry_after("k") > 0
    limiter.refund("k")
    assert limiter.retry_after("k") == 0
    limiter.refund("never-seen")  # nothing to take back: no error
