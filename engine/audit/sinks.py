"""Where audit records go: stdout (a JSON line), a file (reopened for logrotate), the database.

A sink's ``write(record) -> bool`` says whether it accepted the record; it never raises. The
database sink accepts by queueing; a background task hands records to the store's coroutine.
``ready() -> bool`` says whether the sink can write now: ``audit.required`` asks it before an action,
so an action whose record could not be written is refused before it changes anything. A file
deleted under the sink (its directory removed) is neither ready nor written to; a database sink whose
last write failed is not ready until a write (or its probe) succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TextIO

import structlog

log = structlog.get_logger("keyturn.audit")

DatabaseWrite = Callable[[dict[str, Any]], Awaitable[None]]
Probe = Callable[[], Awaitable[Any]]
PROBE_EVERY = 1.0  # seconds between probes of a failing database sink


def to_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


class Sink(Protocol):
    name: str

    def write(self, record: Mapping[str, Any]) -> bool: ...

    def ready(self) -> bool: ...

    def reopen(self) -> None: ...

    async def aclose(self) -> None: ...


class StdoutSink:
    """One JSON line per record on ``stream`` (default: the current ``sys.stdout``)."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> bool:
        stream = self.stream if self.stream is not None else sys.stdout
        try:
            with self._lock:
                stream.write(to_json({"logger": "keyturn.audit", **record}) + "\n")
                stream.flush()
        except (OSError, ValueError):  # closed or broken stream
            return False
        return True

    def ready(self) -> bool:
        stream = self.stream if self.stream is not None else sys.stdout
        return not stream.closed

    def reopen(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FileSink:
    """Append JSON lines to ``path`` (created 0600). :meth:`reopen` after logrotate renamed it."""

    name = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._open()  # a bad path fails at start, not at the first event

    def _open(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def _usable(self) -> None:
        """Open the file when closed or deleted (it would be written into nothing); OSError if not."""
        if self._file is not None and os.fstat(self._file.fileno()).st_nlink == 0:
            self._close()
        if self._file is None:
            self._open()

    def ready(self) -> bool:
        with self._lock:
            try:
                self._usable()
            except OSError:
                self._close()
                return False
        return True

    def write(self, record: Mapping[str, Any]) -> bool:
        line = to_json(record) + "\n"
        with self._lock:
            try:
                self._usable()
                assert self._file is not None
                self._file.write(line)
                self._file.flush()
            except OSError as exc:
                self._close()
                log.error("audit_file_write_failed", path=self.path, error=type(exc).__name__)
                return False
        return True

    def reopen(self) -> None:
        """Close and open the path again (SIGHUP after logrotate moved the file away)."""
        with self._lock:
            self._close()
            try:
                self._open()
            except OSError as exc:  # the next write retries
                log.error("audit_file_reopen_failed", path=self.path, error=type(exc).__name__)

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    async def aclose(self) -> None:
        with self._lock:
            self._close()


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
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(max_queue)
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
        try:
            self._queue.put_nowait(dict(record))
        except asyncio.QueueFull:
            log.error("audit_database_queue_full", size=self._queue.maxsize)
            return False
        return not self.failing

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
        loop.call_soon_threadsafe(self._queue.put_nowait, record)
        return True

    async def _run(self) -> None:
        while True:
            record = await self._queue.get()
            try:
                await self._write(record)
                self.failing = False
            except Exception as exc:
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
