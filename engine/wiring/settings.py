"""The settings a reload may change, the holder SIGHUP swaps them in, and the app's base keys.

A component that keeps something built from the settings (a rate limiter's limit, the audit sinks,
the scheduler's intervals, the MCP server's ``auth``) subscribes to the :class:`SettingsHolder`;
everything else reads ``holder.current`` per use. ``reload`` swaps under one lock, so two reloads
never run at once, and answers with a :class:`ReloadReport`: which keys changed, which of them
need a restart (:data:`RESTART_KEYS`, or a subscriber's say), which could not be applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from engine.config.model import Config
from engine.errors import ConfigError
from engine.events import EventBus
from engine.net import ClientAddress
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

    @property
    def base_path(self) -> str:
        """The path of ``public_url`` ("" at the root, "/keyturn" behind a proxy that serves the engine
        under that prefix): the engine's own pages link and post to ``base_path + "/login"`` and so on."""
        return urlsplit(self.public_url).path.rstrip("/")


# Keys read once at startup: a change is reported as needing a restart. Root keys are applied
# hot when the new keyring keeps every old key (engine.wiring.services), and reported otherwise.
RESTART_KEYS: tuple[str, ...] = (
    "storage",
    "api.host",
    "api.port",
    "api.max_body_bytes",
    "api.shutdown_grace",
    "api.idle_timeout",
    "api.development",
    "api.event_loop",
    "metrics.enabled",
    "metrics.address",
)


@dataclasses.dataclass
class ReloadReport:
    """What a reload did: ``changed`` keys (dotted paths), those that ``need_restart``, ``failed`` ones."""

    changed: list[str] = dataclasses.field(default_factory=list)
    needs_restart: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)  # key -> why it was not applied

    def touched(self, *prefixes: str) -> bool:
        """Whether a changed key is one of ``prefixes`` or under one."""
        return any(_under(key, prefix) for key in self.changed for prefix in prefixes)

    def restart(self, key: str) -> None:
        if key not in self.needs_restart:
            self.needs_restart.append(key)


Subscriber = Callable[[Settings, Settings, ReloadReport], Awaitable[None]]


class SettingsHolder:
    """The current :class:`Settings`; :meth:`reload` swaps in new ones and tells every subscriber."""

    def __init__(self, settings: Settings) -> None:
        self.current = settings
        self._subscribers: list[Subscriber] = []
        self.lock = asyncio.Lock()  # one reload at a time

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber(old, new, report)`` after each swap; returns the function that stops it."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    async def reload(self, new: Settings) -> ReloadReport:
        """Swap in ``new`` and apply it (serialized: a second reload waits for the first)."""
        async with self.lock:
            return await self.swap(new)

    async def swap(self, new: Settings) -> ReloadReport:
        """Swap in ``new`` now; the caller holds :attr:`lock` (or nothing else reloads)."""
        old, self.current = self.current, new
        report = ReloadReport(changed=changed_keys(old.config, new.config))
        if old.providers != new.providers and "auth.providers" not in report.changed:
            report.changed.append("auth.providers")  # e.g. a client_secret_path file's content
        for key in report.changed:
            if any(_under(key, prefix) for prefix in RESTART_KEYS):
                report.restart(key)
        for subscriber in list(self._subscribers):
            try:
                await subscriber(old, new, report)
            except ConfigError as exc:
                report.failed[exc.path or "config"] = exc.msg
        return report


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the config keys whose values differ (a list or mapping counts as one key)."""
    if dataclasses.is_dataclass(old) and dataclasses.is_dataclass(new) and type(old) is type(new):
        out: list[str] = []
        for f in dataclasses.fields(old):
            out += changed_keys(getattr(old, f.name), getattr(new, f.name), f"{prefix}{f.name}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".")


ReadyCheck = Callable[[], Awaitable[None]]  # raises with a reason when not ready

SETTINGS = web.AppKey("keyturn_settings", SettingsHolder)
HTTP_SESSION = web.AppKey("keyturn_http_session", aiohttp.ClientSession)
READY_CHECKS = web.AppKey("keyturn_ready_checks", list[tuple[str, ReadyCheck]])
EVENTS = web.AppKey("keyturn_events", EventBus)  # the event stream every component publishes to
