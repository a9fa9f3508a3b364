"""Long-poll waiting for flows without polling the database.

Waiters for one flow share one :class:`asyncio.Event`. When this process completes or fails a flow it
calls :meth:`FlowWaiters.notify`. With several replicas on PostgreSQL, :class:`PgFlowListener` LISTENs on a
channel and turns every ``NOTIFY keyturn_flows, '<flow id>'`` into the same call; when its connection
drops it reconnects and wakes every waiter once, so none misses a completion that happened meanwhile
(a waiter always re-reads the flow after waking).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

log = structlog.get_logger("keyturn.flows.waiters")

CHANNEL = "keyturn_flows"
RECHECK = 0.25  # seconds: with api.processes > 1 on SQLite a waiter re-reads its flow this often


class FlowWaiters:
    """``recheck``: wake a waiter after at most this many seconds even unnotified (other processes on
    SQLite finish flows without telling this one; the caller re-reads the flow, only while it waits)."""

    def __init__(self, *, recheck: float | None = None) -> None:
        self._events: dict[str, tuple[asyncio.Event, int]] = {}
        self.recheck = recheck

    def __len__(self) -> int:
        return sum(n for _, n in self._events.values())

    def watch(self, flow_id: str) -> Watch:
        """Start listening for ``flow_id`` now: a notify after this call wakes :meth:`Watch.wait`, even
        one that lands while the caller is still reading the flow (register first, then read)."""
        event, count = self._events.get(flow_id, (asyncio.Event(), 0))
        self._events[flow_id] = (event, count + 1)
        return Watch(self, flow_id, event)

    async def wait(self, flow_id: str, seconds: float) -> bool:
        """Wait until ``flow_id`` is notified or ``seconds`` pass; True when notified."""
        with self.watch(flow_id) as watch:
            return await watch.wait(seconds)

    def _release(self, flow_id: str, event: asyncio.Event) -> None:
        current = self._events.get(flow_id)
        if current is not None and current[0] is event:
            if current[1] <= 1:
                del self._events[flow_id]
            else:
                self._events[flow_id] = (event, current[1] - 1)

    def notify(self, flow_id: str) -> None:
        entry = self._events.pop(flow_id, None)
        if entry is not None:
            entry[0].set()

    def notify_all(self) -> None:
        events, self._events = self._events, {}
        for event, _ in events.values():
            event.set()


class Watch:
    """One listener for one flow id, from :meth:`FlowWaiters.watch` until the ``with`` block ends."""

    def __init__(self, waiters: FlowWaiters, flow_id: str, event: asyncio.Event) -> None:
        self._waiters, self._flow_id, self._event = waiters, flow_id, event
        self._closed = False

    async def wait(self, seconds: float) -> bool:
        """True once notified (also before this call, since the watch began); False after ``seconds``."""
        try:
            recheck = self._waiters.recheck
            await asyncio.wait_for(self._event.wait(), min(seconds, recheck or seconds))
            return True
        except TimeoutError:
            return False

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._closed:
            self._closed = True
            self._waiters._release(self._flow_id, self._event)


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    """``postgresql+asyncpg://...`` as asyncpg wants it."""
    for prefix in ("postgresql+asyncpg://", "postgres+asyncpg://"):
        if sqlalchemy_url.startswith(prefix):
            return "postgresql://" + sqlalchemy_url[len(prefix) :]
    return sqlalchemy_url


class PgFlowListener:
    """LISTEN on PostgreSQL for flow completions made by other replicas."""

    def __init__(self, url: str, waiters: FlowWaiters, *, retry_delay: float = 1.0) -> None:
        self._dsn = asyncpg_dsn(url)
        self._waiters = waiters
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="keyturn-pg-listen")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.connected.wait(), timeout=5)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._waiters.notify(payload)

    def _on_terminate(self, _conn: Any) -> None:
        self.connected.clear()

    async def _run(self) -> None:
        import asyncpg

        first = True
        while True:
            try:
                self._conn = await asyncpg.connect(self._dsn, timeout=5)
                self._conn.add_termination_listener(self._on_terminate)
                await self._conn.add_listener(CHANNEL, self._on_notify)
                self.connected.set()
                if not first:
                    log.info("flow_listener_reconnected")
                    self._waiters.notify_all()  # re-check: a completion may have happened meanwhile
                first = False
                while not self._conn.is_closed():
                    await asyncio.sleep(1.0)
                    if not self.connected.is_set():
                        break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("flow_listener_error", error=type(exc).__name__)
            self.connected.clear()
            await self._close()
            await asyncio.sleep(self._retry_delay)


async def pg_notify(conn: Any, flow_id: str) -> None:
    """Publish a flow change on an asyncpg/SQLAlchemy connection (call after the change is committed)."""
    from sqlalchemy import text

    await conn.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": flow_id})
