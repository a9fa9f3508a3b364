"""Where audit records go: stdout (a JSON line), a file (reopened for logrotate), the database.

A sink's ``write(record) -> bool`` says whether it accepted the record; it never raises. Every sink
accepts by queueing: the stdout and file sinks (:mod:`engine.audit.lines`) write each loop turn's
lines in one batch, the database sink's background task hands records to the store's coroutine.
``pending()`` is a future of whether the last accepted record was written (``audit.required`` awaits
it for a request); ``sync()`` writes the stdout/file queue now and says whether that worked (the
database sink cannot: it answers whether it is failing).
``ready() -> bool`` says whether the sink can write now: ``audit.required`` asks it before an action,
so an action whose record could not be written is refused before it changes anything. A file
deleted under the sink (its directory removed) is neither ready nor written to; a database sink whose
last write failed is not ready until a write (or its probe) succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import structlog

from engine.audit.lines import FileSink, StdoutSink, to_json

__all__ = ["DatabaseSink", "DatabaseWrite", "FileSink", "Probe", "Sink", "StdoutSink", "to_json"]

log = structlog.get_logger("keyturn.audit")

DatabaseWrite = Callable[[dict[str, Any]], Awaitable[None]]
Probe = Callable[[], Awaitable[Any]]
PROBE_EVERY = 1.0  # seconds between probes of a failing database sink


class Sink(Protocol):
    name: str

    def write(self, record: Mapping[str, Any]) -> bool: ...

    def pending(self) -> Awaitable[bool]: ...

    def sync(self) -> bool: ...

    def ready(self) -> bool: ...

    def reopen(self) -> None: ...

    async def aclose(self) -> None: ...


class _Entry:
    """A queued record and, when someone waits for it, the future of its write."""

    __slots__ = ("record", "result", "written")

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.result: asyncio.Future[bool] | None = None
        self.written: bool | None = None

    def done(self, ok: bool) -> None:
        self.written = ok
        if self.result is not None and not self.result.done():
            self.result.set_result(ok)


class DatabaseSink:
    """Queue records and write them with ``write`` (the store's coroutine) in a background task.

    ``write`` accepts while the queue has room, a loop runs (the task starts on the first record,
    or with :meth:`start`) and the last database write did not fail; a failed database write is
    logged and counted in ``failed``, and until a later write or ``probe`` succeeds the sink
    accepts nothing (records are still queued and tried) and is not :meth:`ready`.
    """

    name = "database"

    def __init__(self, write: DatabaseWrite, *, max_queue: int = 10_000, probe: Probe | None = None) -> None:
        self._write = write
        self._probe = probe
        self._probing: asyncio.Task[None] | None = None
        self._probed_at = float("-inf")
        self.failing = False
        self._queue: asyncio.Queue[_Entry] = asyncio.Queue(max_queue)
        self._last: _Entry | None = None  # the last record queued from the loop
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failed = 0
        self.closed = False

    def start(self) -> None:
        if self._task is None and not self.closed:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(self._run(), name="keyturn-audit-database")

    def write(self, record: Mapping[str, Any]) -> bool:
        if self.closed:
            return False
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is None or (self._loop is not None and running is not self._loop):
            return self._write_from_thread(dict(record))
        self.start()
        entry = _Entry(dict(record))
        try:
            self._queue.put_nowait(entry)
            self._last = entry
        except asyncio.QueueFull:
            log.error("audit_database_queue_full", size=self._queue.maxsize)
            return False
        return not self.failing

    def pending(self) -> asyncio.Future[bool]:
        """Whether the last record queued was written to the database (done once its write ended)."""
        entry, loop = self._last, asyncio.get_running_loop()
        if entry is None or entry.written is not None:
            done = loop.create_future()
            done.set_result(not self.failing if entry is None else entry.written is True)
            return done
        if entry.result is None:
            entry.result = loop.create_future()
        return entry.result

    def sync(self) -> bool:
        """The database is written by the background task: whether the sink is not failing."""
        return not self.failing and not self.closed

    def ready(self) -> bool:
        """Whether records are being written; while failing, probe the database now and then."""
        if self.closed or self._queue.full():
            return False
        if self.failing and self._probe is not None and self._loop is not None:
            now = self._loop.time()
            if self._probing is None and now - self._probed_at >= PROBE_EVERY:
                self._probed_at = now
                self._probing = self._loop.create_task(self._run_probe(), name="keyturn-audit-probe")
        return not self.failing

    async def _run_probe(self) -> None:
        try:
            assert self._probe is not None
            await self._probe()
            self.failing = False
        except Exception as exc:
            log.error("audit_database_probe_failed", error=type(exc).__name__)
        finally:
            self._probing = None

    def _write_from_thread(self, record: dict[str, Any]) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed() or self._queue.full():
            return False
        loop.call_soon_threadsafe(self._queue.put_nowait, _Entry(record))
        return True

    async def _run(self) -> None:
        while True:
            entry = await self._queue.get()
            record = entry.record
            try:
                await self._write(record)
                self.failing = False
                entry.done(True)
            except Exception as exc:
                entry.done(False)
                self.failed += 1
                self.failing = True
                log.error(
                    "audit_database_write_failed", audit_event=record.get("event"), error=type(exc).__name__
                )
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued record was handed to the database."""
        if self._task is not None:
            await self._queue.join()

    def reopen(self) -> None:
        pass

    async def aclose(self) -> None:
        """Write what is queued, then stop."""
        await self.flush()
        self.closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
