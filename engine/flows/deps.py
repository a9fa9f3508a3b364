"""What the flow service and its parts need, passed in explicitly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from engine.config.model import Config
from engine.emit import Emit, noop_emit
from engine.flows.waiters import FlowWaiters
from engine.grants.writer import GrantWriter
from engine.oauth.client import OAuthClient
from engine.providers.model import Provider


@dataclasses.dataclass
class FlowDeps:
    """``config``/``providers``/``public_url`` are read anew per call (SIGHUP reload)."""

    store: Any  # engine.store.Store
    oauth: OAuthClient
    waiters: FlowWaiters
    config: Callable[[], Config]
    providers: Callable[[], Mapping[str, Provider]]
    public_url: Callable[[], str]
    writer: GrantWriter  # stores a completed flow's grant with its refresh schedule
    emit: Emit = noop_emit
    notify: Callable[[str], Any] | None = None  # cross-replica notification (PostgreSQL NOTIFY)
    on_flow: Callable[[str, str], None] | None = None  # (provider, outcome) -> metrics
