"""The JSON-line sinks, stdout and file: records encoded at once, written in batches.

``write(record)`` encodes the record (orjson) and, inside the event loop, queues the line: every line
queued during one loop turn is written with one ``write`` call at the start of the next turn
(``loop.call_soon``), so a request does not pay a write syscall and a flush per record. Outside the
loop thread (a CLI without a loop, a worker thread) the line is written at once, as before.

``write`` returns whether the sink accepted the line: False while the sink is failing (its last write
raised, or its file vanished and cannot be opened again), True otherwise. What became of an accepted
line is known once its batch was written: :meth:`LineSink.pending` is a future of that batch's result
(``audit.required`` waits on it, see :mod:`engine.audit.pipeline`) and :meth:`LineSink.sync` writes
the queue now and returns the result. A failed batch is logged (``audit_file_write_failed``) and its
lines counted in ``failed``; they are not retried. After a failed write the sink accepts nothing and is
not ready until, at most once per second, reopening its file works again.

Queued lines are written on :meth:`reopen` (SIGHUP, to the old file first), :meth:`aclose` (shutdown)
and at interpreter exit (``atexit``), so a normal exit or SIGTERM loses nothing queued.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any, TextIO

import orjson
import structlog

log = structlog.get_logger("keyturn.audit")

RETRY_EVERY = 1.0  # seconds between attempts to reopen a file whose write failed
_LIVE: weakref.WeakSet[LineSink] = weakref.WeakSet()


def to_json(record: Mapping[str, Any]) -> str:
    """The record as one JSON text (what the sinks write, without the newline)."""
    return encode(record).decode("utf-8")


def encode(record: Mapping[str, Any]) -> bytes:
    """The record as JSON bytes: orjson, or ``json`` for what orjson refuses (a huge int, odd keys)."""
    try:
        return orjson.dumps(record, default=str)
    except (orjson.JSONEncodeError, TypeError):
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
        return text.encode("utf-8", "surrogateescape")


@atexit.register
def _flush_all_at_exit() -> None:
    for sink in list(_LIVE):
        sink.sync()


class LineSink:
    """The queue and batch logic of the JSON-line sinks; a subclass says how lines are written."""

    name = "lines"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lines: list[bytes] = []
        self._batch: asyncio.Future[bool] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self.failing = False  # the last write failed
        self._failed_at = float("-inf")
        self.failed = 0  # lines that could not be written
        _LIVE.add(self)

    # ---- for subclasses ----------------------------------------------------------------------
    def _line(self, record: Mapping[str, Any]) -> bytes:
        return encode(record) + b"\n"

    def _writable(self) -> bool:
        """Whether lines can be written now (the file open, the stream not closed); never raises."""
        return True

    def _open_now(self) -> bool:
        """The cheap check ``write`` makes per record (:meth:`_writable` by default)."""
        return self._writable()

    def _put(self, data: bytes) -> None:
        """Write ``data`` (raise OSError or ValueError when it cannot be written)."""

    def _retry(self) -> bool:
        """After a failed write: whether the sink may be tried again (file reopened)."""
        return True

    def _error(self, exc: BaseException, lines: int) -> None:
        log.error(f"audit_{self.name}_write_failed", error=type(exc).__name__, lines=lines)

    # ---- the Sink interface ------------------------------------------------------------------
    def write(self, record: Mapping[str, Any]) -> bool:
        line = self._line(record)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        with self._lock:
            if not self._accepting(per_record=True):
                return False
            self._lines.append(line)
            elsewhere = self._loop is not None and loop is not self._loop and self._loop.is_running()
            if loop is None or elsewhere:  # no loop here, or another thread's loop: write at once
                return self._flush_locked()
            if loop is not self._loop:  # the first loop, or a new one after the last closed
                self._loop, self._scheduled = loop, False
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush_soon)
        return True

    def pending(self) -> asyncio.Future[bool]:
        """The result of writing the batch that holds the last accepted line (done when none is queued)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._lines:
                done = loop.create_future()
                done.set_result(not self.failing)
                return done
            if self._batch is None:
                self._batch = loop.create_future()
            return self._batch

    def sync(self) -> bool:
        """Write what is queued now; whether it was written (nothing queued: whether the sink works)."""
        with self._lock:
            return self._flush_locked()

    def ready(self) -> bool:
        with self._lock:
            return self._accepting()

    def reopen(self) -> None:
        self.sync()

    async def aclose(self) -> None:
        self.sync()
        _LIVE.discard(self)

    # ---- inside ------------------------------------------------------------------------------
    def _accepting(self, *, per_record: bool = False) -> bool:
        """Under the lock: not failing (or recovered) and writable (per record: the cheap check)."""
        if self.failing:
            now = time.monotonic()
            if now - self._failed_at < RETRY_EVERY:
                return False
            self._failed_at = now
            if not self._retry():
                return False
            self.failing = False
        return self._open_now() if per_record else self._writable()

    def _flush_soon(self) -> None:
        with self._lock:
            self._scheduled = False
            self._flush_locked()

    def _flush_locked(self) -> bool:
        lines, self._lines = self._lines, []
        batch, self._batch = self._batch, None
        ok = not self.failing
        if lines:
            try:
                self._put(b"".join(lines))
                ok = True
            except (OSError, ValueError) as exc:
                ok = False
                self.failing, self._failed_at = True, time.monotonic()
                self.failed += len(lines)
                self._error(exc, len(lines))
        if batch is not None:
            _resolve_soon(batch, ok)
        return ok


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():
        future.set_result(ok)


def _resolve_soon(future: asyncio.Future[bool], ok: bool) -> None:
    """Set the batch's result on its own loop (this thread's: now; another's: through that loop)."""
    loop = future.get_loop()
    try:
        here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        _resolve(future, ok)
    elif not loop.is_closed():
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_resolve, future, ok)


class StdoutSink(LineSink):
    """One JSON line per record on ``stream`` (default: the current ``sys.stdout``), ``logger`` first."""

    name = "stdout"

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def _line(self, record: Mapping[str, Any]) -> bytes:
        return encode({"logger": "keyturn.audit", **record}) + b"\n"

    def _writable(self) -> bool:
        return not self._out().closed

    def _put(self, data: bytes) -> None:
        stream = self._out()
        stream.write(data.decode("utf-8", "surrogateescape"))
        stream.flush()

    def _error(self, exc: BaseException, lines: int) -> None:
        pass  # the log goes to the same broken stream


class FileSink(LineSink):
    """Append JSON lines to ``path`` (created 0600). :meth:`reopen` after logrotate renamed it.

    A file deleted under the sink (its directory removed) is found when a batch is written or
    :meth:`ready` is asked: the sink opens the path again, and refuses while that fails.
    """

    name = "file"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self._fd: int | None = None
        self._open()  # a bad path fails at start, not at the first event

    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    @property
    def closed(self) -> bool:
        """Whether the file is closed now (after aclose, or while its path cannot be opened)."""
        return self._fd is None

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _usable(self) -> int:
        """The open file, opened again when closed or deleted (it would be written into nothing)."""
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self._close()
        if self._fd is None:
            self._open()
        assert self._fd is not None
        return self._fd

    def _writable(self) -> bool:
        try:
            self._usable()
        except OSError:
            self._close()
            return False
        return True

    def _open_now(self) -> bool:
        """Open (or opened again); whether the file vanished is checked per batch and by ready()."""
        if self._fd is not None:
            return True
        return self._writable()

    def _put(self, data: bytes) -> None:
        try:
            fd = self._usable()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            self._close()
            raise

    def _retry(self) -> bool:
        self._close()
        return self._writable()

    def _error(self, exc: BaseException, lines: int) -> None:
        log.error("audit_file_write_failed", path=self.path, error=type(exc).__name__, lines=lines)

    def reopen(self) -> None:
        """Write what is queued, then close and open the path again (SIGHUP after logrotate)."""
        with self._lock:
            self._flush_locked()
            self._close()
            try:
                self._open()
            except OSError as exc:  # the next write retries
                log.error("audit_file_reopen_failed", path=self.path, error=type(exc).__name__)

    async def aclose(self) -> None:
        with self._lock:
            self._flush_locked()
            self._close()
        _LIVE.discard(self)
