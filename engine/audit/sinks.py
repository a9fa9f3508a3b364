"""Where audit records go: stdout (a JSON line), a file (reopened for logrotate), the database.

A sink's ``write(record) -> bool`` says whether it accepted the record; it never raises. The
database sink accepts by queueing; a background task hands records to the store's coroutine.
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


def to_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


class Sink(Protocol):
    name: str

    def write(self, record: Mapping[str, Any]) -> bool: ...

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

    def write(self, record: Mapping[str, Any]) -> bool:
        line = to_json(record) + "\n"
        with self._lock:
            try:
                if self._file is None:
                    self._open()
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

    ``write`` accepts while the queue has room and a loop runs (the task starts on the first
    record, or with :meth:`start`); a failed database write is logged and counted in ``failed``.
    """

    name = "database"

    def __init__(self, write: DatabaseWrite, *, max_queue: int = 10_000) -> None:
        self._write = write
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
        return True

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
            except Exception as exc:
                self.failed += 1
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
