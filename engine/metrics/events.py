"""Metrics from the event stream: ``bus.subscribe(MetricsSubscriber(metrics))``.

Each event kind is matched by type; within a kind, every name is handled explicitly
(``assert_never`` makes mypy refuse a new name nobody decided about).
"""

from __future__ import annotations

from typing import assert_never

from engine.events import (
    AccessEvent,
    ApprovalEvent,
    Event,
    FlowEvent,
    GrantEvent,
    HookCalled,
    LoginEvent,
    McpAuthEvent,
    OpsEvent,
    ReapEvent,
    RefreshObserved,
    ToolEvent,
    WorkerChecked,
)
from engine.metrics.registry import Metrics


class MetricsSubscriber:
    """Counts flows, refreshes, tool calls, worker health and provider errors from events."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def __call__(self, event: Event) -> None:
        m = self.metrics
        match event:
            case FlowEvent():
                self._flow(event)
            case GrantEvent():
                self._grant(event)
            case RefreshObserved():
                m.observe_refresh(event.provider, event.result, event.seconds)
            case ToolEvent():
                m.tool_executed(event.tool, event.result)
            case WorkerChecked():
                m.set_worker_up(event.worker, event.up)
            case ApprovalEvent():
                m.approval(event.name.removeprefix("approval."))
            case HookCalled():
                m.observe_hook(event.hook, event.kind, event.outcome, event.seconds)
            case McpAuthEvent():
                m.mcp_oauth_event(
                    event.name.removeprefix("mcp_oauth."), event.outcome, event.reason or "none"
                )
            case ReapEvent() | AccessEvent() | OpsEvent() | LoginEvent():  # login: engine.login.metrics
                pass
            case _:
                assert_never(event)

    def _flow(self, event: FlowEvent) -> None:
        match event.name:
            case "flow.completed":
                self.metrics.on_flow(event.provider, "completed")
            case "flow.failed":
                self.metrics.on_flow(event.provider, "failed")
                self._provider_error(event.provider, event.reason)
            case "flow.started" | "user.verified" | "user.mismatch" | "reauth.reconnect_sub_changed":
                pass
            case _:
                assert_never(event.name)

    def _grant(self, event: GrantEvent) -> None:
        match event.name:
            case "grant.refresh_failed" | "grant.needs_reauth":
                self._provider_error(event.provider, event.reason)
            case "grant.unreadable":
                self.metrics.grant_unreadable(event.provider)
            case "grant.refreshed" | "grant.revoked" | "grant.revoke_failed" | "token.exposed":
                pass
            case _:
                assert_never(event.name)

    def _provider_error(self, provider: str, reason: str | None) -> None:
        if provider:
            self.metrics.provider_error(provider, reason or "unknown")
