"""Typed application keys and the config holder that SIGHUP swaps."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from engine.api.clientip import ClientAddress
from engine.config.model import Config
from engine.flows.revoke import Revoker
from engine.metrics.registry import Metrics
from engine.providers.model import Provider


@dataclasses.dataclass
class Settings:
    """What a reload may change, swapped as a whole so a request sees one consistent version."""

    config: Config
    providers: dict[str, Provider]
    source: str | None = None
    client_address: ClientAddress = dataclasses.field(default_factory=lambda: ClientAddress(()))
    base_dir: Path = dataclasses.field(default_factory=Path.cwd)  # where engine.yaml lives

    @property
    def public_url(self) -> str:
        api = self.config.api
        return (api.public_url or f"http://{api.host}:{api.port}").rstrip("/")


class SettingsHolder:
    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self.listeners: list[Callable[[Settings, Settings], Awaitable[None]]] = []

    async def swap(self, new: Settings) -> None:
        old, self.current = self.current, new
        for listener in self.listeners:
            await listener(old, new)


ReadyCheck = Callable[[], Awaitable[None]]  # raises with a reason when not ready

SETTINGS = web.AppKey("keyturn_settings", SettingsHolder)
HTTP_SESSION = web.AppKey("keyturn_http_session", aiohttp.ClientSession)
READY_CHECKS = web.AppKey("keyturn_ready_checks", list[tuple[str, ReadyCheck]])
SERVICES = web.AppKey("keyturn_services", dict[str, Any])

# services opened by engine.api.services.services_ctx (typed loosely here to keep imports one-way)
STORE: web.AppKey[Any] = web.AppKey("keyturn_store")  # engine.store.Store
FLOWS: web.AppKey[Any] = web.AppKey("keyturn_flows")  # engine.flows.service.FlowService
METRICS = web.AppKey("keyturn_metrics", Metrics)  # set by engine.metrics.http.setup_metrics
TOOLS: web.AppKey[Any] = web.AppKey("keyturn_tools")  # engine.tools.runner.ToolRunner
REVOKER = web.AppKey("keyturn_revoker", Revoker)  # the one way to disconnect a grant
