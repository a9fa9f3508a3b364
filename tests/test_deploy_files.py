"""deploy/: Dockerfile, compose, engine.docker.yaml, Prometheus alerts and Grafana dashboard are coherent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from engine.crypto.cipher import generate_key
from engine.login.metrics import LoginMetrics
from engine.metrics.registry import Metrics
from engine.providers.load import load_config
from engine.webhooks.metrics import WebhookMetrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

# The metrics of issue 8, as Prometheus exposes them (counters with _total, histograms with their series).
METRICS = {
    "keyturn_http_requests_total",
    "keyturn_http_request_duration_seconds_bucket",
    "keyturn_http_request_duration_seconds_sum",
    "keyturn_http_request_duration_seconds_count",
    "keyturn_auth_flows_total",
    "keyturn_token_refresh_total",
    "keyturn_token_refresh_duration_seconds_bucket",
    "keyturn_token_refresh_duration_seconds_sum",
    "keyturn_token_refresh_duration_seconds_count",
    "keyturn_grants",
    "keyturn_grants_unreadable_total",
    "keyturn_refresh_lag_seconds",
    "keyturn_tool_executions_total",
    "keyturn_provider_errors_total",
    "keyturn_worker_up",
    "keyturn_build_info",
    # issue 17: hooks and approvals
    "keyturn_hook_calls_total",
    "keyturn_hook_duration_seconds_bucket",
    "keyturn_hook_duration_seconds_sum",
    "keyturn_hook_duration_seconds_count",
    "keyturn_tool_approvals_total",
    # issue 16: the MCP authorization server
    "keyturn_mcp_oauth_events_total",
    # webhooks (engine.webhooks.metrics) and sign-in (engine.login.metrics), on the same registry
    "keyturn_webhook_deliveries_total",
    "keyturn_webhook_delivery_duration_seconds_bucket",
    "keyturn_webhook_delivery_duration_seconds_sum",
    "keyturn_webhook_delivery_duration_seconds_count",
    "keyturn_logins_total",
    "keyturn_sessions_revoked_total",
    "keyturn_connections_disconnected_total",
}

_KEYWORDS = {"and", "or", "unless", "offset", "bool", "inf", "nan"}
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function or aggregation
        if match.group(0).lower() not in _KEYWORDS:
            names.add(match.group(0))
    return names


def _exposed_names() -> set[str]:
    names = set()
    metrics = Metrics(CollectorRegistry())
    WebhookMetrics(metrics)
    LoginMetrics(metrics)
    for family in metrics.registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def _alerts() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def _dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana" / "keyturn-dashboard.json").read_text())
    return data


def _dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in _dashboard()["panels"] for t in p.get("targets", [])]
    for var in _dashboard()["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query["query"])
            assert inner, query
            exprs.append(inner.group(1))
    return exprs


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def test_metric_name_extraction() -> None:
    """The PromQL name extractor finds metrics and skips functions, labels, keywords and durations."""
    expr = (
        'sum by (provider) (rate(keyturn_a_total{x!="y"}[5m] offset 1h)) / on(p) keyturn_b > 0.1 and up == 0'
    )
    assert metric_names(expr) == {"keyturn_a_total", "keyturn_b", "up"}


def test_metric_list_matches_the_engine() -> None:
    """The list of metric names is exactly what engine.metrics (with the webhook and sign-in counters on
    its registry) exposes."""
    assert _exposed_names() == METRICS


def test_yaml_and_json_files_parse() -> None:
    """Every YAML file under deploy/ parses, and so does the dashboard JSON."""
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        assert yaml.safe_load(path.read_text()) is not None, path
    assert _dashboard()["panels"]


def test_alerts_cover_the_issue() -> None:
    """Alerts exist for refresh failures, refresh lag, needs_reauth growth, worker down and the 5xx rate."""
    exprs = "\n".join(rule["expr"] for rule in _alerts())
    for fragment in (
        'keyturn_token_refresh_total{outcome!="refreshed"',
        "keyturn_refresh_lag_seconds >",
        'keyturn_grants{status="needs_reauth"}',
        "keyturn_worker_up == 0",
        'keyturn_http_requests_total{status=~"5.."}',
    ):
        assert fragment in exprs, fragment
    for rule in _alerts():
        assert rule["alert"].startswith("Keyturn") and rule["labels"]["severity"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_referenced_metric_is_known() -> None:
    """Every metric named in the alerts and the dashboard starts with keyturn_ and is one of issue 8's."""
    referenced: set[str] = set()
    for expr in [rule["expr"] for rule in _alerts()] + _dashboard_exprs():
        names = metric_names(expr)
        assert names, expr
        referenced |= names
    assert all(name.startswith("keyturn_") for name in referenced), referenced
    assert referenced <= METRICS, referenced - METRICS


def test_dashboard_shows_the_main_metrics() -> None:
    """The dashboard has panels over flows, HTTP latency, tools, refreshes, grants, lag and workers."""
    referenced = set().union(*(metric_names(e) for e in _dashboard_exprs()))
    for name in (
        "keyturn_auth_flows_total",
        "keyturn_http_request_duration_seconds_bucket",
        "keyturn_tool_executions_total",
        "keyturn_token_refresh_total",
        "keyturn_grants",
        "keyturn_refresh_lag_seconds",
        "keyturn_worker_up",
        "keyturn_http_requests_total",
    ):
        assert name in referenced, name
    ids = [p["id"] for p in _dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_dashboard_and_alerts_cover_the_newer_metrics() -> None:
    """Hooks, approvals, webhooks, the MCP authorization server and unreadable grants have dashboard panels
    and alert rules, each alert with a promtool unit test in alerts.test.yml."""
    panels = set().union(*(metric_names(e) for e in _dashboard_exprs()))
    for name in (
        "keyturn_hook_calls_total",
        "keyturn_hook_duration_seconds_bucket",
        "keyturn_tool_approvals_total",
        "keyturn_webhook_deliveries_total",
        "keyturn_webhook_delivery_duration_seconds_bucket",
        "keyturn_mcp_oauth_events_total",
        "keyturn_grants_unreadable_total",
    ):
        assert name in panels, name
    alerted = {rule["alert"]: metric_names(rule["expr"]) for rule in _alerts()}
    newer = {
        "KeyturnGrantsUnreadable": "keyturn_grants_unreadable_total",
        "KeyturnHookFailing": "keyturn_hook_calls_total",
        "KeyturnHookSlow": "keyturn_hook_duration_seconds_bucket",
        "KeyturnApprovalsUndecided": "keyturn_tool_approvals_total",
        "KeyturnWebhookDeliveriesFailed": "keyturn_webhook_deliveries_total",
        "KeyturnWebhookRetrying": "keyturn_webhook_deliveries_total",
        "KeyturnMcpTokenReuse": "keyturn_mcp_oauth_events_total",
        "KeyturnMcpTokensRefused": "keyturn_mcp_oauth_events_total",
    }
    for alert, name in newer.items():
        assert name in alerted[alert], alert
    tests = yaml.safe_load((DEPLOY / "prometheus" / "alerts.test.yml").read_text())["tests"]
    fired = {t["alertname"] for group in tests for t in group["alert_rule_test"] if t["exp_alerts"]}
    assert set(newer) <= fired, set(newer) - fired


# where scripts/test keeps the promtool it takes from Debian's prometheus package
PROMTOOL_CACHE = DEPLOY.parent / ".cache" / "promtool" / "bin"


def _promtool() -> str:
    """promtool on PATH or in scripts/test's cache; skipped when absent, except under CI=true (required)."""
    found = shutil.which("promtool") or shutil.which("promtool", path=str(PROMTOOL_CACHE))
    if found is None:
        hint = "promtool is not installed (scripts/test puts it in .cache/promtool under CI=true or as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{hint}; required under CI=true")
        pytest.skip(hint)
    return found


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    """`promtool check rules` accepts alerts.yml and `promtool test rules` fires each alert as expected."""
    promtool = _promtool()
    prom = DEPLOY / "prometheus"
    for args in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        proc = subprocess.run([promtool, *args], cwd=prom, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_wires_env_volumes_and_health() -> None:
    """Compose runs keyturn after a healthy postgres:16, with the env file, the config and both volumes."""
    compose = _compose()
    pg, kt = compose["services"]["postgres"], compose["services"]["keyturn"]
    assert pg["image"] == "postgres:16"
    assert "pgdata:/var/lib/postgresql/data" in pg["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert kt["env_file"] == ["keyturn.env"] == pg["env_file"]
    assert kt["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert "keyturn-data:/var/lib/keyturn" in kt["volumes"]
    assert "./engine.docker.yaml:/etc/keyturn/engine.yaml:ro" in kt["volumes"]
    assert "/ready" in " ".join(kt["healthcheck"]["test"])
    assert kt["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert set(compose["volumes"]) == {"pgdata", "keyturn-data"}
    assert kt["ports"] == ["127.0.0.1:9099:9099"]


def _env_example() -> dict[str, str]:
    values = {}
    for line in (DEPLOY / "keyturn.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_engine_docker_yaml_loads_with_the_example_env() -> None:
    """engine.docker.yaml loads with the env file's names (a real root key in place of the placeholder)."""
    lines = (DEPLOY / "engine.docker.yaml").read_text().splitlines()
    text = "\n".join(line.split(" #")[0] for line in lines if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{env:([A-Z0-9_]+)\}", text))  # those without a default
    env = _env_example()
    assert required <= set(env), required - set(env)
    assert all(v.startswith(("REPLACE", "http://127.0.0.1")) for v in env.values()), env
    env["KEYTURN_ROOT_KEY"] = generate_key()
    env["POSTGRES_PASSWORD"] = "p@ss/w:rd"
    loaded = load_config(DEPLOY / "engine.docker.yaml", env=env)
    assert loaded.config.storage.url is not None
    assert loaded.config.storage.url.startswith("postgresql+asyncpg://keyturn:")
    assert loaded.config.storage.url.endswith("@postgres:5432/keyturn")
    assert loaded.config.api.host == "0.0.0.0" and loaded.config.api.port == 9099
    assert not loaded.config.api.development


def test_dockerfile_runs_unprivileged_with_a_healthcheck() -> None:
    """The Dockerfile builds on python:3.11-slim, runs as a non-root USER, checks /ready, exposes 9099."""
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms and all(f == "python:3.11-slim" for f in froms)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    text = "\n".join(lines)
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib\.request.*:9099/ready", text, re.M)
    assert "EXPOSE 9099" in lines
    assert 'VOLUME ["/var/lib/keyturn"]' in lines
    assert "pip install" in text
    for src in re.findall(r"^COPY (?!--)(\S+)", text, re.M):
        assert (DEPLOY.parent / src).exists(), src
    assert (DEPLOY / "dockerignore.txt").read_text().count("*.key")
