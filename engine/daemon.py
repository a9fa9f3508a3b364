"""Run the engine: bind, serve, reload on SIGHUP, drain and stop on SIGTERM/SIGINT.

A reload (one at a time) re-reads engine.yaml and swaps it in through the settings holder, whose
subscribers apply what they built from it (``engine.wiring``); the log line ``config_reloaded`` and
the audit event ``config.reloaded`` name the keys that changed, those that need a restart and those
that could not be applied.
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import structlog
from aiohttp import web

from engine import sdnotify
from engine.api.app import create_app
from engine.errors import ConfigError, KeyturnError
from engine.events import OpsEvent, OpsName, Outcome
from engine.wiring.options import BACKGROUND, WiringOptions
from engine.wiring.services import AUDITOR
from engine.wiring.settings import EVENTS, SETTINGS, Settings

log = structlog.get_logger("keyturn.daemon")

Reloader = Callable[[], Settings]  # re-reads engine.yaml; raises ConfigError when it is not valid


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        reload: Reloader | None = None,
        reuse_port: bool = False,
        leader: bool = True,
    ) -> None:
        self.settings = settings
        self.reload_fn = reload
        self.reuse_port = reuse_port  # one of api.processes: share the port (SO_REUSEPORT)
        # the scheduler (a refresh pass at once) and worker polling start only once we listen:
        # a serve that cannot bind must not touch a provider before it exits; only the leader
        # (the first of api.processes) runs the refresh/reap scheduler
        self.app = create_app(settings, options=WiringOptions(defer_background=True, leader=leader))
        self.runner: web.AppRunner | None = None
        self.stopping = asyncio.Event()
        self.bound: list[tuple[str, int]] = []
        self._watchdog: asyncio.Task[None] | None = None

    async def start(self) -> None:
        api = self.settings.config.api
        self.runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=float(api.shutdown_grace),
            keepalive_timeout=float(api.idle_timeout),  # Arcade's idle_timeout: same meaning
        )
        await self.runner.setup()
        site = web.TCPSite(
            self.runner, api.host, api.port, reuse_address=True, reuse_port=self.reuse_port or None
        )
        try:
            await site.start()
        except OSError as exc:
            raise KeyturnError(
                f"cannot listen on {api.host}:{api.port}: {exc.strerror or exc}", error="bind_failed"
            ) from None
        if BACKGROUND in self.app:
            self.app[BACKGROUND].start()
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            addr = sock.getsockname()
            self.bound.append((str(addr[0]), int(addr[1])))
        if (followed := self._follow_bound_port(self.settings)) is not self.settings:
            await self.app[SETTINGS].swap(followed)
            self.settings = followed
        self._audit("config.loaded", "success", {"providers": len(self.settings.providers)})
        log.info(
            "started",
            listen=[f"{h}:{p}" for h, p in self.bound],
            public_url=self.settings.public_url,
            development=api.development,
            event_loop="uvloop"
            if type(asyncio.get_running_loop()).__module__.startswith("uvloop")
            else "asyncio",
        )
        sdnotify.ready()  # systemd Type=notify: we are serving
        interval = sdnotify.watchdog_interval()
        if interval is not None and self._watchdog is None:
            self._watchdog = asyncio.create_task(self._ping_watchdog(interval / 2))

    async def _ping_watchdog(self, every: float) -> None:
        while True:  # a blocked event loop misses its pings and systemd restarts us (WatchdogSec=)
            sdnotify.watchdog()
            await asyncio.sleep(every)

    async def reload(self) -> bool:
        """Swap in a freshly read config; keep the old one (and say why) when the new one is invalid.

        Reloads are serialized: a SIGHUP during a reload waits for it, then reads the file again.
        """
        if self.reload_fn is None:
            return False
        holder = self.app[SETTINGS]
        async with holder.lock:
            sdnotify.reloading()
            try:
                return await self._reload(self.reload_fn)
            finally:
                sdnotify.ready()  # reloaded, or kept the old config: serving either way

    async def _reload(self, reload_fn: Reloader) -> bool:
        self._reopen_audit()
        try:
            new = self._follow_bound_port(reload_fn())
        except ConfigError as exc:
            log.error("config_reload_rejected", error=str(exc))
            self._audit("config.reload_rejected", "failure", {"reason": exc.path or "config"})
            return False
        report = await self.app[SETTINGS].swap(new)
        self.settings = new
        if report.touched("logging"):
            from engine.logs import configure_logging

            configure_logging(new.config.logging.level, new.config.logging.format)
        fields = {
            "changed": report.changed,
            "needs_restart": report.needs_restart,
            "not_applied": sorted(report.failed),
        }
        if report.needs_restart or report.failed:
            log.warning(
                "config_reloaded",
                source=new.source,
                **fields,
                errors=[f"{k}: {v}" for k, v in report.failed.items()],
            )
        else:
            log.info("config_reloaded", source=new.source, **fields)
        self._audit("config.reloaded", "success", {"providers": len(new.providers), **fields})
        return True

    def _follow_bound_port(self, settings: Settings) -> Settings:
        """``api.port: 0`` with a derived public_url (``...:0``): the URL names the port actually bound."""
        parts = urlsplit(settings.public_url)
        if settings.config.api.port != 0 or parts.port != 0 or not self.bound:
            return settings
        netloc = parts.netloc.rsplit(":", 1)[0] + f":{self.bound[0][1]}"
        api = dataclasses.replace(settings.config.api, public_url=urlunsplit(parts._replace(netloc=netloc)))
        return dataclasses.replace(settings, config=dataclasses.replace(settings.config, api=api))

    def _reopen_audit(self) -> None:
        auditor = self.app.get(AUDITOR)
        if auditor is not None:
            auditor.reopen()  # logrotate moved the file: start a new one

    def _audit(self, name: OpsName, outcome: Outcome, details: dict[str, object]) -> None:
        try:
            self.app[EVENTS].publish(OpsEvent(name=name, outcome=outcome, details=details))
            auditor = self.app.get(AUDITOR)
            if auditor is not None:
                auditor.sync()  # written now, before the log line that follows it
        except Exception as exc:  # an audit sink problem must not stop a reload
            log.error("audit_failed", audit_event=name, error=type(exc).__name__)

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self.runner is not None:
            sdnotify.stopping()
            log.info("stopping")
            await self.runner.cleanup()
            self.runner = None
            log.info("stopped")

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))

    async def run_until_stopped(self) -> None:
        # handlers first: a SIGTERM that arrives while starting stops the daemon once it has started
        self.install_signal_handlers()
        try:
            await self.start()
            await self.stopping.wait()
        finally:
            await self.stop()
