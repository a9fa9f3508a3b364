"""The tool catalog: every configured worker's tools, by fully qualified name, refreshed in the background.

Workers come from ``workers[]`` and Arcade's ``tools.directors[].workers[].http``. A worker that is
down keeps its last good list (and is reported down); a name given by two workers goes to the first.
Names match case-insensitively as ``Toolkit.Tool`` or ``Toolkit_Tool``. A name not in the catalog
asks again only the workers not asked in the last ``MISS_REFRESH_INTERVAL`` (a worker may have gained
the tool; a worker just added by a reload is asked at once); callers missing meanwhile wait for that
round and ask nothing: a flood of unknown names costs each worker at most one ``/worker/tools`` call
per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import structlog

from engine.config.model import Config
from engine.errors import NotFound, ProviderError, Unavailable
from engine.events import Publish, WorkerChecked, discard
from engine.tools.worker import WorkerClient

log = structlog.get_logger("keyturn.tools")

MISS_REFRESH_INTERVAL = 10.0  # seconds: how often an unknown tool name may make a worker be asked again


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


def unknown_tool(name: str) -> NotFound:
    """The answer for a tool that does not exist, and for one the caller may not see (the same)."""
    return NotFound(f"unknown tool {name[:200]!r}", error="unknown_tool")


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
        publish: Publish = discard,
    ) -> None:
        self.config = config
        self.session = session
        self.publish = publish
        self._tools: dict[str, Tool] = {}
        self._by_worker: dict[str, list[dict[str, Any]]] = {}
        self.up: dict[str, bool] = {}
        self.refreshed_at = 0.0
        self.version = 0  # changes whenever the catalog does
        self._asked_at: dict[tuple[str, str], float] = {}  # (worker id, uri) -> when last asked
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    async def refresh(self, *, asked_within: float | None = None) -> None:
        """Ask the workers for their tools and rebuild the catalog.

        ``asked_within``: skip the workers asked less than this many seconds ago (their last list
        stays); when every worker was, nothing is asked.
        """
        async with self._lock:
            workers = configured_workers(self.config(), self.session)
            now = time.monotonic()
            ask = [
                w
                for w in workers
                if asked_within is None
                or now - self._asked_at.get((w.worker_id, w.uri), -math.inf) >= asked_within
            ]
            if asked_within is not None and not ask:
                return
            for worker in ask:
                self._asked_at[(worker.worker_id, worker.uri)] = now
            answers = await asyncio.gather(*(w.list_tools() for w in ask), return_exceptions=True)
            by_id = {w.worker_id: a for w, a in zip(ask, answers, strict=True)}
            tools: dict[str, Tool] = {}
            for worker in workers:
                if worker.worker_id not in by_id:  # not asked this round: its last list stands
                    definitions = self._by_worker.get(worker.worker_id, [])
                    self._add(tools, worker, definitions)
                    continue
                result = by_id[worker.worker_id]
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
                self.publish(WorkerChecked(worker=worker.worker_id, up=self.up[worker.worker_id]))
                self._add(tools, worker, definitions)
            known = {w.worker_id for w in workers}
            self._by_worker = {k: v for k, v in self._by_worker.items() if k in known}
            self._asked_at = {k: v for k, v in self._asked_at.items() if k[0] in known}
            if _fingerprint(tools) != _fingerprint(self._tools):
                self.version += 1  # MCP subscriptions/listen: notifications/tools/list_changed
            self._tools = tools
            if len(ask) == len(workers):
                self.refreshed_at = time.monotonic()

    @staticmethod
    def _add(tools: dict[str, Tool], worker: WorkerClient, definitions: list[dict[str, Any]]) -> None:
        for definition in definitions:
            try:
                tool = Tool(definition, worker)
                key = normalize(tool.name)
            except (KeyError, TypeError):
                continue
            tools.setdefault(key, tool)

    async def ensure_fresh(self) -> None:
        interval = float(self.config().tools.catalog_refresh)
        if time.monotonic() - self.refreshed_at > interval:
            await self.refresh()
        elif not self._tools:  # nothing listed yet (workers down?): ask again, but not on every call
            await self.refresh(asked_within=MISS_REFRESH_INTERVAL)

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
        if tool is None:  # a worker may have gained the tool since it was last asked
            await self.refresh(asked_within=MISS_REFRESH_INTERVAL)
            tool = self._tools.get(normalize(name))
        if tool is None:
            raise unknown_tool(name)
        return tool

    async def all(self, toolkit: str | None = None) -> list[Tool]:
        await self.ensure_fresh()
        tools = sorted(self._tools.values(), key=lambda t: t.name.lower())
        if toolkit:
            tools = [t for t in tools if t.definition["toolkit"]["name"].lower() == toolkit.lower()]
        return tools


def _fingerprint(tools: dict[str, Tool]) -> str:
    return json.dumps(
        sorted((key, tool.worker.worker_id, tool.definition) for key, tool in tools.items()),
        sort_keys=True,
        default=str,
    )
