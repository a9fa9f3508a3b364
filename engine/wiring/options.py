"""How the composition root opens the services: options, background jobs, the base keys of an app."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import TextIO

from aiohttp import web

from engine.events import EventBus
from engine.wiring.settings import EVENTS, READY_CHECKS, SETTINGS, Settings, SettingsHolder


@dataclasses.dataclass(frozen=True)
class WiringOptions:
    """How the services are opened (``create_app(settings, options=...)``, :func:`open_services`)."""

    scheduler: bool = True  # run background jobs: the refresh/reap scheduler and the catalog refresh
    leader: bool = True  # run the refresh/reap scheduler (api.processes: only the first process)
    defer_background: bool = False  # start them only at app[BACKGROUND].start() (the daemon, once bound)
    migrate: bool = True  # create the schema in an empty database (False: refuse a missing one)
    audit_stdout: TextIO | None = None  # the audit stdout sink's stream (the CLI: stderr)
    # called with a resource's name once it is open ("store", "auditor", ...); raising stops the
    # startup there (what a failure half-way does; the tests make each resource fail in turn)
    on_open: Callable[[str], None] | None = None


Ctx = Callable[[web.Application], AsyncIterator[None]]


class Background:
    """Background jobs (scheduler, catalog polling): started as added, or all at :meth:`start`."""

    def __init__(self, *, deferred: bool) -> None:
        self.started = not deferred
        self._waiting: list[Callable[[], None]] = []

    def add(self, start: Callable[[], None]) -> None:
        if self.started:
            start()
        else:
            self._waiting.append(start)

    def start(self) -> None:
        self.started = True
        waiting, self._waiting = self._waiting, []
        for start in waiting:
            start()


OPTIONS = web.AppKey("keyturn_wiring_options", WiringOptions)
BACKGROUND = web.AppKey("keyturn_background", Background)


def prepare(app: web.Application, settings: Settings, options: WiringOptions) -> None:
    """Put what every context reads on ``app``: the settings holder, the event bus, the options."""
    app[SETTINGS] = SettingsHolder(settings)
    app[READY_CHECKS] = []
    app[EVENTS] = EventBus()
    app[OPTIONS] = options
    app[BACKGROUND] = Background(deferred=options.defer_background)


def opened(app: web.Application, name: str) -> None:
    """Say that ``name`` is open (to ``WiringOptions.on_open``)."""
    options = app.get(OPTIONS)
    hook = options.on_open if options is not None else None
    if hook is not None:
        hook(name)
