"""Sign-ins started per client address: ``security.rate_limiting.max_login_starts`` per ``window_minutes``.

Each ``GET /login`` writes a row (the pending sign-in), so starting one is counted before anything is
written, in the database like the other limits (every process and replica sees one count). Over the
limit the caller gets :class:`engine.errors.RateLimited` (429 with ``Retry-After``) and a
``rate_limited`` access event (reason ``login``) is published.
"""

from __future__ import annotations

from collections.abc import Callable

from engine.config.model import Config, RateLimitConfig
from engine.errors import RateLimited
from engine.events import AccessEvent, Publish, discard
from engine.store.ratehits import RateHitRepo, SharedLimiter


class StartLimit:
    def __init__(
        self, rate_hits: Callable[[], RateHitRepo], config: Callable[[], Config], publish: Publish = discard
    ) -> None:
        rl = config().security.rate_limiting
        self.limiter = SharedLimiter(rate_hits, "login", rl.max_login_starts, rl.window_minutes * 60.0)
        self.config = config
        self.publish = publish

    def configure(self, rl: RateLimitConfig) -> None:
        """A reload's limit and window (counts already made stay)."""
        self.limiter.configure(rl.max_login_starts, rl.window_minutes * 60.0)

    async def count(self, source_ip: str) -> None:
        """Count one sign-in started from ``source_ip``; :class:`RateLimited` over the limit."""
        if not self.config().security.rate_limiting.enabled:
            return
        try:
            await self.limiter.hit(source_ip, what="sign-ins started from this address")
        except RateLimited:
            self.publish(AccessEvent(name="rate_limited", reason="login", source_ip=source_ip))
            raise
