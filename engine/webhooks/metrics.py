"""Counters for webhook deliveries (on the app's metrics registry): by endpoint id and outcome."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from engine.metrics.registry import Metrics

BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class WebhookMetrics:
    """``outcome``: delivered | retry (the attempt failed, another follows) | failed (given up)."""

    def __init__(self, metrics: Metrics | None) -> None:
        self.metrics = metrics
        if metrics is None:
            return
        r = metrics.registry
        self.deliveries = Counter(
            "keyturn_webhook_deliveries", "Webhook delivery attempts by endpoint and outcome.",
            ["endpoint", "outcome"], registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "keyturn_webhook_delivery_duration_seconds", "Webhook delivery attempt latency by endpoint.",
            ["endpoint"], buckets=BUCKETS, registry=r,
        )  # fmt: skip

    def attempt(self, endpoint: str, outcome: str, seconds: float | None = None) -> None:
        if self.metrics is None:
            return
        label = self.metrics.words(endpoint)
        self.deliveries.labels(endpoint=label, outcome=self.metrics.words(outcome)).inc()
        if seconds is not None:
            self.duration.labels(endpoint=label).observe(seconds)
