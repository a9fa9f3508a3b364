"""The tool catalog: every configured worker's tools, by fully qualified name, refreshed in the background.

Workers come from ``workers[]`` and Arcade's ``tools.directors[].workers[].http``. A worker that is
down keeps its last good list (and is reported down); a name given by two workers goes to the first.
Names match case-insensitively as ``Toolkit.Tool`` or ``Toolkit_Tool``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from engine.config.model import Config
from engine.errors import NotFound, ProviderError, Unavailable
from engine.tools.worker import WorkerClient

log = structlog.get_logger("keyturn.tools")


@dataclasses.dataclass
class Tool:
    definition: dict[str, Any]
    worker: WorkerClient

    @property
    def name(self) -> str:
        return f"{self.definition['toolkit']['name']}.{self.definition['name']}"

    @property
    def auth(self) -> dict[str, Any] | None:
        requirement = (self.definition.get("requirements") or {}).get("authorization")
        return requirement if isinstance(requirement, dict) else None


def normalize(name: str) -> str:
    return name.strip().lower().replace("_", ".", 1) if "." not in name else name.strip().lower()


def configured_workers(config: Config, session: aiohttp.ClientSession) -> list[WorkerClient]:
    workers = [
        WorkerClient(session, w.id, w.uri, w.secret, float(w.timeout)) for w in config.workers if w.enabled
    ]
    for director in config.tools.directors:
        if not director.enabled:
            continue
        for dw in director.workers:
            if dw.enabled:
                workers.append(
                    WorkerClient(session, dw.id, dw.http.uri, dw.http.secret, float(dw.http.timeout))
                )
    return workers


class ToolRegistry:
    def __init__(
        self,
        config: Callable[[], Config],
        session: aiohttp.ClientSession,
        on_worker: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.config = config
        self.session = session
        self.on_worker = on_worker
        self._tools: dict[str, Tool] = {}
        self._by_worker: dict[str, list[dict[str, Any]]] = {}
        self.up: dict[str, bool] = {}
        self.refreshed_at = 0.0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        async with self._lock:
            workers = configured_workers(self.config(), self.session)
            results = await asyncio.gather(*(w.list_tools() for w in workers), return_exceptions=True)
            tools: dict[str, Tool] = {}
            for worker, result in zip(workers, results, strict=True):
                if isinstance(result, BaseException):
                    if not isinstance(result, ProviderError | Unavailable):
                        log.error("worker_list_failed", worker=worker.worker_id, error=type(result).__name__)
                    else:
                        log.warning("worker_down", worker=worker.worker_id, detail=str(result)[:200])
                    self.up[worker.worker_id] = False
                    definitions = self._by_worker.get(worker.worker_id, [])
                else:
                    self.up[worker.worker_id] = True
                    definitions = result
                    self._by_worker[worker.worker_id] = definitions
                if self.on_worker is not None:
                    self.on_worker(worker.worker_id, self.up[worker.worker_id])
                for definition in definitions:
                    try:
                        tool = Tool(definition, worker)
                        key = normalize(tool.name)
                    except (KeyError, TypeError):
                        continue
                    tools.setdefault(key, tool)
            known = {w.worker_id for w in workers}
            self._by_worker = {k: v for k, v in self._by_worker.items() if k in known}
            self._tools = tools
            self.refreshed_at = time.monotonic()

    async def ensure_fresh(self) -> None:
        interval = float(self.config().tools.catalog_refresh)
        if not self._tools or time.monotonic() - self.refreshed_at > interval:
            await self.refresh()

    def start(self) -> None:
        async def loop() -> None:
            while True:
                try:
                    await self.refresh()
                except Exception as exc:  # the next round tries again
                    log.error("catalog_refresh_failed", error=type(exc).__name__)
                await asyncio.sleep(max(5.0, float(self.config().tools.catalog_refresh)))

        self._task = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def get(self, name: str) -> Tool:
        tool = self._tools.get(normalize(name))
        if tool is None:
            await self.refresh()  # a worker may have gained the tool since the last round
            tool = self._tools.get(normalize(name))
        if tool is None:
            raise NotFound(f"unknown tool {name!r}", error="tool_not_found")
        return tool

    async def all(self, toolkit: str | None = None) -> list[Tool]:
        await self.ensure_fresh()
        tools = sorted(self._tools.values(), key=lambda t: t.name.lower())
        if toolkit:
            tools = [t for t in tools if t.definition["toolkit"]["name"].lower() == toolkit.lower()]
        return tools
