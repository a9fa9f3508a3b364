"""Every Keyturn metric (``keyturn_`` prefix), created on a registry passed in (a fresh one per test).

Label values are bounded words: routes are the router's templates (``/v1/auth/status``, never a raw
path), methods a fixed set, providers and error kinds short identifiers (the first
``MAX_LABEL_VALUES`` distinct ones per label; later ones and anything else count as ``other``).
No user id, token or path ever becomes a label value.

``observe_request`` is what ``engine.api.middleware.edge_middleware`` reports to; the others are
called by :class:`engine.metrics.events.MetricsSubscriber` from the event stream.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from engine import __version__

OTHER = "other"
MAX_LABEL_VALUES = 200
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
_ROUTE = re.compile(r"^/[A-Za-z0-9_./{}:-]{0,199}$")
_TOOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # Toolkit.ToolName

GrantCounts = Mapping[tuple[str, str], int]  # (provider, status) -> number of grants

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REFRESH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class LabelGuard:
    """Bound a label's values: identifier-shaped, at most ``limit`` distinct; anything else is ``other``."""

    def __init__(self, limit: int = MAX_LABEL_VALUES, pattern: re.Pattern[str] = _WORD) -> None:
        self.limit = limit
        self.pattern = pattern
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if not self.pattern.match(value):
            return OTHER
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(value)
        return value


class _GrantsCollector(Collector):
    def __init__(self, source: Callable[[], GrantCounts]) -> None:
        self.source = source
        self.guard = LabelGuard()

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "keyturn_grants", "Stored grants by provider and status.", labels=["provider", "status"]
        )
        for (provider, status), count in sorted(self.source().items()):
            family.add_metric([self.guard(provider), self.guard(status)], float(count))
        yield family


class Metrics:
    """The engine's metrics on ``registry``; pass a fresh ``CollectorRegistry`` per app or test."""

    def __init__(self, registry: CollectorRegistry, *, version: str = __version__) -> None:
        self.registry = registry
        r = registry
        self.http_requests = Counter(
            "keyturn_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.http_request_duration = Histogram(
            "keyturn_http_request_duration_seconds", "HTTP request latency by route template.",
            ["route"], buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.flows = Counter(
            "keyturn_auth_flows",
            "Authorization flows by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.refreshes = Counter(
            "keyturn_token_refresh",
            "Token refreshes by provider and outcome.",
            ["provider", "outcome"],
            registry=r,
        )
        self.refresh_duration = Histogram(
            "keyturn_token_refresh_duration_seconds", "Token refresh latency by provider.",
            ["provider"], buckets=REFRESH_BUCKETS, registry=r,
        )  # fmt: skip
        self.refresh_lag = Gauge(
            "keyturn_refresh_lag_seconds", "How late the oldest due grant is (0 when none is overdue).",
            registry=r,
        )  # fmt: skip
        self.tool_executions = Counter(
            "keyturn_tool_executions", "Tool executions by tool and outcome.", ["tool", "outcome"], registry=r
        )
        self.worker_up = Gauge(
            "keyturn_worker_up", "1 when a worker answered its last health check.", ["worker"], registry=r
        )
        self.provider_errors = Counter(
            "keyturn_provider_errors",
            "Provider errors by provider and kind.",
            ["provider", "kind"],
            registry=r,
        )
        self.grants_unreadable = Counter(
            "keyturn_grants_unreadable",
            "Grants found with a stored value that does not decrypt (each is then unusable).",
            ["provider"],
            registry=r,
        )
        self.hook_calls = Counter(
            "keyturn_hook_calls", "Hook calls (tools.hooks) by hook, kind and outcome.",
            ["hook", "kind", "outcome"], registry=r,
        )  # fmt: skip
        self.hook_duration = Histogram(
            "keyturn_hook_duration_seconds", "Hook call latency by hook.",
            ["hook"], buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.approvals = Counter(
            "keyturn_tool_approvals", "Held tool calls by outcome (requested, approved, denied, used).",
            ["outcome"], registry=r,
        )  # fmt: skip
        self.mcp_oauth = Counter(
            "keyturn_mcp_oauth_events",
            "The MCP authorization server's events (token issued/refused, reuse detected, ...) by outcome.",
            ["event", "outcome", "reason"],
            registry=r,
        )
        self.build_info = Gauge(
            "keyturn_build_info", "Keyturn build; the value is 1.", ["version"], registry=r
        )
        self.build_info.labels(version=version).set(1)

        self._grant_counts: GrantCounts = {}
        self.grants_source: Callable[[], GrantCounts] = lambda: self._grant_counts
        registry.register(_GrantsCollector(lambda: self.grants_source()))

        self.routes = LabelGuard(pattern=_ROUTE)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.providers = LabelGuard()
        self.words = LabelGuard()  # outcomes, statuses, error kinds
        self.tools = LabelGuard(pattern=_TOOL)

    # ---- hooks -------------------------------------------------------------------------------
    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """For ``edge_middleware``: one request on ``route`` (a template or ``unmatched``).

        The labelled children are looked up once per (route, method, status) and kept: a label
        guard's answer for a value never changes, and ``labels()`` costs a lock and two dict lookups.
        """
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            label = self.routes(route) if route != "unmatched" else route
            verb = method.upper() if method.upper() in METHODS else OTHER
            status_label = str(status) if 100 <= status <= 599 else OTHER
            children = (
                self.http_requests.labels(route=label, method=verb, status=status_label),
                self.http_request_duration.labels(route=label),
            )
            if len(self._request_children) < 4 * MAX_LABEL_VALUES:
                self._request_children[key] = children
        children[0].inc()
        children[1].observe(max(seconds, 0.0))

    def on_flow(self, provider: str, outcome: str) -> None:
        self.flows.labels(provider=self.providers(provider), outcome=self.words(outcome)).inc()

    def observe_refresh(self, provider: str, outcome: str, seconds: float) -> None:
        p = self.providers(provider)
        self.refreshes.labels(provider=p, outcome=self.words(outcome)).inc()
        self.refresh_duration.labels(provider=p).observe(max(seconds, 0.0))

    def observe_refresh_lag(self, seconds: float) -> None:
        self.refresh_lag.set(max(seconds, 0.0))

    def tool_executed(self, tool: str, outcome: str) -> None:
        self.tool_executions.labels(tool=self.tools(tool), outcome=self.words(outcome)).inc()

    def observe_hook(self, hook: str, kind: str, outcome: str, seconds: float) -> None:
        """For ``engine.tools.hooks.Hooks``: one call of ``hook`` (outcome ok, check_failed, timeout ...)."""
        h = self.providers(hook)
        self.hook_calls.labels(hook=h, kind=self.words(kind), outcome=self.words(outcome)).inc()
        self.hook_duration.labels(hook=h).observe(max(seconds, 0.0))

    def approval(self, outcome: str) -> None:
        self.approvals.labels(outcome=self.words(outcome)).inc()

    def set_worker_up(self, worker: str, up: bool) -> None:
        self.worker_up.labels(worker=self.providers(worker)).set(1 if up else 0)

    def provider_error(self, provider: str, kind: str) -> None:
        self.provider_errors.labels(provider=self.providers(provider), kind=self.words(kind)).inc()

    def grant_unreadable(self, provider: str) -> None:
        self.grants_unreadable.labels(provider=self.providers(provider)).inc()

    def mcp_oauth_event(self, event: str, outcome: str, reason: str) -> None:
        w = self.words
        self.mcp_oauth.labels(event=w(event), outcome=w(outcome), reason=w(reason)).inc()

    def set_grants(self, counts: GrantCounts) -> None:
        """Replace the grant counts reported at the next scrape (when no ``grants_source`` is set)."""
        self._grant_counts = dict(counts)


METRICS = web.AppKey("keyturn_metrics", Metrics)  # set by engine.api.metrics.setup_metrics
