"""engine.metrics and engine.api.metrics: keyturn_ metrics, /metrics over HTTP, bounded labels."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from engine import __version__
from engine.api.app import create_app
from engine.api.metrics import METRICS_RUNNER, authorized, parse_address
from engine.config.model import Config, MetricsConfig
from engine.errors import ConfigError
from engine.metrics import Metrics
from engine.metrics.registry import MAX_LABEL_VALUES, METRICS, OTHER
from engine.wiring.settings import Settings

Client = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
TOKEN = "metrics-scrape-token-1234"


def make_app(**metrics: Any) -> web.Application:
    return create_app(Settings(config=Config(metrics=MetricsConfig(**metrics)), providers={}), services=False)


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    value = metrics.registry.get_sample_value(name, labels)
    return value


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry())


def test_every_metric_has_the_prefix(metrics: Metrics) -> None:
    """Every metric the engine defines is named keyturn_* and all the documented ones exist."""
    names = {m.name for m in metrics.registry.collect()}
    assert all(n.startswith("keyturn_") for n in names)
    assert {
        "keyturn_http_requests", "keyturn_http_request_duration_seconds", "keyturn_auth_flows",
        "keyturn_token_refresh", "keyturn_token_refresh_duration_seconds", "keyturn_grants",
        "keyturn_refresh_lag_seconds", "keyturn_tool_executions", "keyturn_provider_errors",
        "keyturn_worker_up", "keyturn_build_info", "keyturn_hook_calls", "keyturn_hook_duration_seconds",
        "keyturn_tool_approvals",
    } <= names  # fmt: skip
    assert sample(metrics, "keyturn_build_info", version=__version__) == 1


def test_hooks_count(metrics: Metrics) -> None:
    """The hook methods count flows, refreshes (with latency), lag, tools and provider errors."""
    metrics.on_flow("github", "completed")
    metrics.observe_refresh("github", "success", 0.3)
    metrics.observe_refresh_lag(12.0)
    metrics.tool_executed("Github.ListRepos", "success")
    metrics.set_worker_up("local", False)
    metrics.provider_error("github", "invalid_grant")
    assert sample(metrics, "keyturn_auth_flows_total", provider="github", outcome="completed") == 1
    assert sample(metrics, "keyturn_token_refresh_total", provider="github", outcome="success") == 1
    assert sample(metrics, "keyturn_token_refresh_duration_seconds_sum", provider="github") == pytest.approx(
        0.3
    )
    assert sample(metrics, "keyturn_refresh_lag_seconds") == 12.0
    assert sample(metrics, "keyturn_worker_up", worker="local") == 0
    assert sample(metrics, "keyturn_tool_executions_total", tool="Github.ListRepos", outcome="success") == 1
    assert sample(metrics, "keyturn_provider_errors_total", provider="github", kind="invalid_grant") == 1


def test_grants_gauge_from_callback(metrics: Metrics) -> None:
    """keyturn_grants is read from the grants source at scrape time (snapshot or callback)."""
    metrics.set_grants({("github", "active"): 3, ("slack", "needs_reauth"): 1})
    assert sample(metrics, "keyturn_grants", provider="github", status="active") == 3
    counts = {("google", "active"): 7}
    metrics.grants_source = lambda: counts
    assert sample(metrics, "keyturn_grants", provider="google", status="active") == 7
    assert sample(metrics, "keyturn_grants", provider="github", status="active") is None


def test_label_values_are_bounded(metrics: Metrics) -> None:
    """Tokens, raw paths, odd methods and statuses, and values past the limit are counted as other."""
    metrics.provider_error("Bearer abc.def", "x" * 100)
    metrics.observe_request("/v1/things/?q=secret value", "BREW", 999, 0.01)
    for i in range(MAX_LABEL_VALUES + 5):
        metrics.on_flow(f"p{i}", "completed")
    assert sample(metrics, "keyturn_provider_errors_total", provider=OTHER, kind=OTHER) == 1
    assert sample(metrics, "keyturn_http_requests_total", route=OTHER, method=OTHER, status=OTHER) == 1
    assert sample(metrics, "keyturn_auth_flows_total", provider=OTHER, outcome="completed") == 5
    flows = next(m for m in metrics.registry.collect() if m.name == "keyturn_auth_flows")
    assert len({s.labels["provider"] for s in flows.samples}) <= MAX_LABEL_VALUES + 1


async def test_ping_then_metrics_shows_counters(aiohttp_client: Client) -> None:
    """/ping and an unknown path are counted by route template; /metrics serves the text format."""
    app = make_app()
    client = await aiohttp_client(app)
    assert (await client.get("/ping")).status == 200
    assert (await client.get("/ping")).status == 200
    assert (await client.get("/no/such/user-1234")).status == 404
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    text = await resp.text()
    assert 'keyturn_http_requests_total{method="GET",route="/ping",status="200"} 2.0' in text
    assert 'keyturn_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'keyturn_http_request_duration_seconds_count{route="/ping"} 2.0' in text
    assert "user-1234" not in text
    assert f'keyturn_build_info{{version="{__version__}"}} 1.0' in text
    assert sample(app[METRICS], "keyturn_http_requests_total", route="/ping", method="GET", status="200") == 2


async def test_each_app_has_its_own_registry(aiohttp_client: Client) -> None:
    """Two apps count separately (a fresh registry per app)."""
    first, second = make_app(), make_app()
    client = await aiohttp_client(first)
    await client.get("/ping")
    assert (
        sample(first[METRICS], "keyturn_http_requests_total", route="/ping", method="GET", status="200") == 1
    )
    assert (
        sample(second[METRICS], "keyturn_http_requests_total", route="/ping", method="GET", status="200")
        is None
    )


async def test_bearer_token_enforced(aiohttp_client: Client) -> None:
    """With metrics.bearer_token, /metrics answers 401 without it or with a wrong one, 200 with it."""
    client = await aiohttp_client(make_app(bearer_token=TOKEN))
    resp = await client.get("/metrics")
    assert resp.status == 401 and resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in await resp.text()
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"})).status == 401
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status == 200 and "keyturn_http_requests_total" in await resp.text()


async def test_disabled_means_no_route_and_no_key(aiohttp_client: Client) -> None:
    """metrics.enabled: false registers neither /metrics nor the metrics key."""
    app = make_app(enabled=False)
    assert METRICS not in app
    client = await aiohttp_client(app)
    assert (await client.get("/metrics")).status == 404


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_separate_listener(aiohttp_client: Client) -> None:
    """With metrics.address, /metrics is served on that listener (token enforced) and not on the main port."""
    app = make_app(address=f"127.0.0.1:{free_port()}", bearer_token=TOKEN)
    client = await aiohttp_client(app)
    await client.get("/ping")
    assert (await client.get("/metrics")).status == 404
    host, port = app[METRICS_RUNNER].addresses[0][:2]
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{host}:{port}/metrics") as resp:
            assert resp.status == 401
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with session.get(f"http://{host}:{port}/metrics", headers=headers) as resp:
            assert resp.status == 200
            assert 'route="/ping"' in await resp.text()


def test_address_parsing() -> None:
    """host:port and [v6]:port parse; anything else is a ConfigError at metrics.address."""
    assert parse_address("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_address("[::1]:9100") == ("::1", 9100)
    for bad in ("9100", "host:", "host:http", "host:70000"):
        with pytest.raises(ConfigError) as info:
            parse_address(bad)
        assert info.value.path == "metrics.address"


def test_authorized_compare() -> None:
    """No token configured lets any request in; with one only the exact bearer value passes."""
    assert authorized("", None)
    assert authorized(f"bearer {TOKEN}", TOKEN)
    assert not authorized(f"Bearer {TOKEN}x", TOKEN)
    assert not authorized("", TOKEN)
