"""engine.metrics: Prometheus metrics (``registry``) and their HTTP side (``http``)."""

from engine.metrics.registry import LabelGuard, Metrics

__all__ = ["LabelGuard", "Metrics"]
