"""The webhooks context: the deliverer (``engine.webhooks.deliver``) on its own HTTP session.

Opened after the services of :mod:`engine.wiring.services` (it needs the store). The store wakes the
deliverer after each transaction that wrote an event; a reload that changes ``webhooks`` applies at
the next pass (the deliverer reads the settings per pass) and wakes it now. With background jobs off
(the CLI, tests without a scheduler) nothing is delivered: the events wait in the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from engine import __version__
from engine.metrics.registry import METRICS
from engine.webhooks.deliver import Deliverer
from engine.webhooks.metrics import WebhookMetrics
from engine.wiring.options import BACKGROUND, OPTIONS, opened
from engine.wiring.services import STORE
from engine.wiring.settings import SETTINGS, ReloadReport, Settings

WEBHOOKS = web.AppKey("keyturn_webhooks", Deliverer)


async def webhooks_ctx(app: web.Application) -> AsyncIterator[None]:
    holder = app[SETTINGS]
    store = app[STORE]
    # its own connections: a slow or dead endpoint never holds one that a provider or worker call needs
    session = aiohttp.ClientSession(
        headers={"User-Agent": f"Keyturn-Webhooks/{__version__}"},
        connector=aiohttp.TCPConnector(limit=32, limit_per_host=8),
    )
    deliverer = Deliverer(
        store, lambda: holder.current.config, session, metrics=WebhookMetrics(app.get(METRICS))
    )
    app[WEBHOOKS] = deliverer
    store.on_outbox = deliverer.wake

    async def changed(old: Settings, new: Settings, report: ReloadReport) -> None:
        if report.touched("webhooks"):
            deliverer.wake()

    unsubscribe = holder.subscribe(changed)
    try:
        if app[OPTIONS].scheduler:
            app[BACKGROUND].add(deliverer.start)
        opened(app, "webhooks")
        yield
    finally:
        unsubscribe()
        store.on_outbox = None
        await deliverer.stop()
        await session.close()
