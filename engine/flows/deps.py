"""What the flow service and its parts need, passed in explicitly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from engine.config.model import Config
from engine.events import FlowEvent, FlowName, Outcome, Publish, discard
from engine.flows.waiters import FlowWaiters
from engine.grants.writer import GrantWriter
from engine.oauth.client import OAuthClient
from engine.providers.model import Provider
from engine.store.records import FlowRecord
from engine.store.store import Store


@dataclasses.dataclass
class FlowDeps:
    """``config``/``providers``/``public_url`` are read anew per call (SIGHUP reload)."""

    store: Store
    oauth: OAuthClient
    waiters: FlowWaiters
    config: Callable[[], Config]
    providers: Callable[[], Mapping[str, Provider]]
    public_url: Callable[[], str]
    writer: GrantWriter  # stores a completed flow's grant with its refresh schedule
    publish: Publish = discard  # the event stream (engine.events)
    notify: Callable[[str], Any] | None = None  # cross-replica notification (PostgreSQL NOTIFY)


def flow_event(name: FlowName, outcome: Outcome, flow: FlowRecord, *, reason: str | None = None) -> FlowEvent:
    """The event about ``flow`` (its user, provider and id)."""
    return FlowEvent(
        name=name,
        outcome=outcome,
        user_id=flow.user_id,
        provider=flow.provider_id,
        flow_id=flow.id,
        reason=reason,
    )
