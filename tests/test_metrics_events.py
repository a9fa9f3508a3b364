"""engine.metrics.events: metrics follow the event stream, matched on event types, not audit strings."""

from __future__ import annotations

from engine.api.metrics import new_registry
from engine.events import EventBus, FlowEvent, GrantEvent, RefreshObserved, ToolEvent, WorkerChecked
from engine.metrics.events import MetricsSubscriber
from engine.metrics.registry import Metrics


def test_events_move_the_metrics() -> None:
    """Flow results, refreshes, tool calls, worker health and provider errors are counted from events."""
    metrics = Metrics(new_registry(process=False))
    bus = EventBus()
    bus.subscribe(MetricsSubscriber(metrics))
    bus.publish(FlowEvent(name="flow.completed", outcome="success", user_id="u", provider="acme"))
    bus.publish(
        FlowEvent(name="flow.failed", outcome="failure", user_id="u", provider="acme", reason="access_denied")
    )
    bus.publish(FlowEvent(name="flow.started", outcome="success", user_id="u", provider="acme"))
    bus.publish(
        GrantEvent(
            name="grant.needs_reauth", outcome="failure", user_id="u", provider="acme", reason="invalid_grant"
        )
    )
    bus.publish(GrantEvent(name="grant.refreshed", outcome="success", user_id="u", provider="acme"))
    bus.publish(
        GrantEvent(name="grant.unreadable", outcome="error", user_id="u", provider="acme", reason="x")
    )
    bus.publish(RefreshObserved(provider="acme", result="refreshed", seconds=0.2))
    bus.publish(ToolEvent(tool="Echo.Say", result="success", user_id="u", duration=0.1, worker="w1"))
    bus.publish(WorkerChecked(worker="w1", up=False))
    r = metrics.registry
    assert r.get_sample_value("keyturn_auth_flows_total", {"provider": "acme", "outcome": "completed"}) == 1
    assert r.get_sample_value("keyturn_auth_flows_total", {"provider": "acme", "outcome": "failed"}) == 1
    errors = {"provider": "acme", "kind": "access_denied"}
    assert r.get_sample_value("keyturn_provider_errors_total", errors) == 1
    assert r.get_sample_value("keyturn_provider_errors_total", {**errors, "kind": "invalid_grant"}) == 1
    assert r.get_sample_value("keyturn_grants_unreadable_total", {"provider": "acme"}) == 1
    assert (
        r.get_sample_value("keyturn_token_refresh_total", {"provider": "acme", "outcome": "refreshed"}) == 1
    )
    tool = {"tool": "Echo.Say", "outcome": "success"}
    assert r.get_sample_value("keyturn_tool_executions_total", tool) == 1
    assert r.get_sample_value("keyturn_worker_up", {"worker": "w1"}) == 0


def test_hook_calls_are_counted_with_latency() -> None:
    """HookCalled counts by hook, kind and outcome and observes the hook's latency."""
    from engine.events import HookCalled

    metrics = Metrics(new_registry(process=False))
    bus = EventBus()
    bus.subscribe(MetricsSubscriber(metrics))
    bus.publish(HookCalled(hook="pii", kind="post", outcome="ok", seconds=0.05))
    bus.publish(HookCalled(hook="pii", kind="post", outcome="timeout", seconds=5.0))
    r = metrics.registry
    assert (
        r.get_sample_value("keyturn_hook_calls_total", {"hook": "pii", "kind": "post", "outcome": "ok"}) == 1
    )
    assert r.get_sample_value("keyturn_hook_duration_seconds_count", {"hook": "pii"}) == 2
    assert r.get_sample_value("keyturn_hook_duration_seconds_sum", {"hook": "pii"}) == 5.05
