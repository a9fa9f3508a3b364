"""Counters for sign-in, sessions and the connections page (on the app's metrics registry)."""

from __future__ import annotations

from prometheus_client import Counter

from engine.metrics.registry import Metrics


class LoginMetrics:
    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        if metrics is None:
            return
        r = metrics.registry
        self.logins = Counter(
            "keyturn_logins", "Sign-ins at the login provider by outcome and reason.", ["outcome", "reason"],
            registry=r,
        )  # fmt: skip
        self.sessions_revoked = Counter(
            "keyturn_sessions_revoked", "Sessions ended before expiry, by reason.", ["reason"], registry=r
        )
        self.disconnected = Counter(
            "keyturn_connections_disconnected", "Grants disconnected by their user on /connections.",
            ["provider"], registry=r,
        )  # fmt: skip

    def login(self, outcome: str, reason: str = "none") -> None:
        if self.metrics is not None:
            self.logins.labels(outcome=self.metrics.words(outcome), reason=self.metrics.words(reason)).inc()

    def session_revoked(self, reason: str) -> None:
        if self.metrics is not None:
            self.sessions_revoked.labels(reason=self.metrics.words(reason)).inc()

    def connection_disconnected(self, provider: str) -> None:
        if self.metrics is not None:
            self.disconnected.labels(provider=self.metrics.providers(provider)).inc()
