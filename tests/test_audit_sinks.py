"""engine.audit.sinks: stdout lines, the file sink (0600, reopen for logrotate), the database queue."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.audit.sinks import DatabaseSink, FileSink, StdoutSink

RECORD = {"time": "2024-01-01T00:00:00Z", "event": "flow.started", "outcome": "success"}


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stdout_sink_writes_one_json_line() -> None:
    """The stdout sink writes one JSON object per record, marked as the audit logger."""
    out = io.StringIO()
    sink = StdoutSink(out)
    assert sink.write(RECORD) and sink.write({**RECORD, "event": "flow.completed"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["flow.started", "flow.completed"]
    assert lines[0]["logger"] == "keyturn.audit"


def test_stdout_sink_reports_closed_stream() -> None:
    """A closed stream makes the stdout sink refuse, not raise."""
    out = io.StringIO()
    out.close()
    assert StdoutSink(out).write(RECORD) is False


def test_stdout_sink_default_is_current_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a stream the sink writes to the current sys.stdout."""
    assert StdoutSink().write(RECORD)
    assert json.loads(capsys.readouterr().out)["event"] == "flow.started"


def test_file_sink_appends_and_creates_0600(tmp_path: Path) -> None:
    """The file is created 0600 and records are appended to existing content."""
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sink.write(RECORD)
    asyncio.run(sink.aclose())
    sink = FileSink(path)
    assert sink.write({**RECORD, "event": "flow.completed"})
    assert [r["event"] for r in read_lines(path)] == ["flow.started", "flow.completed"]


def test_file_sink_reopen_after_rename(tmp_path: Path) -> None:
    """After logrotate renames the file, reopen() starts a new file; old lines stay in the rotated one."""
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    sink.write(RECORD)
    path.rename(tmp_path / "audit.log.1")
    sink.write({**RECORD, "event": "flow.failed"})  # still the renamed file until reopened
    sink.reopen()
    sink.write({**RECORD, "event": "flow.completed"})
    assert [r["event"] for r in read_lines(tmp_path / "audit.log.1")] == ["flow.started", "flow.failed"]
    assert [r["event"] for r in read_lines(path)] == ["flow.completed"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_file_sink_bad_path_fails_at_start(tmp_path: Path) -> None:
    """A file in a missing directory fails when the sink is made."""
    with pytest.raises(OSError):
        FileSink(tmp_path / "missing" / "audit.log")


def test_file_sink_refuses_when_directory_gone_after_reopen(tmp_path: Path) -> None:
    """When reopening fails the sink refuses records (returns False) and recovers once the path works."""
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "audit.log"
    sink = FileSink(path)
    path.unlink()
    folder.rmdir()
    sink.reopen()
    assert sink.write(RECORD) is False
    folder.mkdir()
    assert sink.write(RECORD) is True
    assert read_lines(path)[0]["event"] == "flow.started"


def test_file_sink_deleted_with_its_directory_is_not_written(tmp_path: Path) -> None:
    """A file removed with its directory is neither ready nor written to; it recovers with the path."""
    folder = tmp_path / "logs"
    folder.mkdir()
    path = folder / "audit.log"
    sink = FileSink(path)
    assert sink.ready() and sink.write(RECORD)
    path.unlink()
    folder.rmdir()
    assert sink.ready() is False and sink.write(RECORD) is False  # the open file is gone: nothing lands
    folder.mkdir()
    assert sink.ready() and sink.write({**RECORD, "event": "flow.completed"})
    assert [r["event"] for r in read_lines(path)] == ["flow.completed"]


async def test_database_sink_failing_is_not_accepted_until_it_writes_again() -> None:
    """After a failed database write the sink accepts nothing and is not ready until a probe passes."""
    down = True

    async def write(record: dict[str, Any]) -> None:
        if down:
            raise ConnectionError("database down")

    async def probe() -> None:
        if down:
            raise ConnectionError("database down")

    sink = DatabaseSink(write, probe=probe)
    assert sink.ready() and sink.write(RECORD) is True  # queued while the database looked fine
    await sink.flush()
    assert sink.failed == 1 and sink.ready() is False and sink.write(RECORD) is False
    await sink.flush()
    down = False
    sink._probed_at = float("-inf")
    sink.ready()  # starts a probe
    for _ in range(20):
        await asyncio.sleep(0)
    assert sink.ready() and sink.write(RECORD) is True
    await sink.aclose()


async def test_database_sink_queues_and_writes() -> None:
    """The database sink accepts at once and hands records to the coroutine in order."""
    written: list[dict[str, Any]] = []

    async def write(record: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        written.append(record)

    sink = DatabaseSink(write)
    assert sink.write(RECORD) and sink.write({**RECORD, "event": "flow.completed"})
    await sink.flush()
    assert [r["event"] for r in written] == ["flow.started", "flow.completed"]
    await sink.aclose()
    assert sink.write(RECORD) is False


async def test_database_sink_write_failure_is_counted() -> None:
    """A failing database write is counted and later records still go through."""
    written: list[str] = []

    async def write(record: dict[str, Any]) -> None:
        if record["event"] == "flow.failed":
            raise ConnectionError("database down")
        written.append(record["event"])

    sink = DatabaseSink(write)
    sink.write({**RECORD, "event": "flow.failed"})
    sink.write(RECORD)
    await sink.flush()
    assert sink.failed == 1 and written == ["flow.started"]
    await sink.aclose()


async def test_database_sink_full_queue_refuses() -> None:
    """When the queue is full the sink refuses instead of blocking."""
    gate = asyncio.Event()

    async def write(record: dict[str, Any]) -> None:
        await gate.wait()

    sink = DatabaseSink(write, max_queue=2)
    results = [sink.write(RECORD) for _ in range(4)]
    assert results[:2] == [True, True] and results[-1] is False
    gate.set()
    await sink.aclose()


async def test_database_sink_accepts_from_another_thread() -> None:
    """A record emitted from a worker thread is queued onto the loop's task."""
    written: list[str] = []

    async def write(record: dict[str, Any]) -> None:
        written.append(record["event"])

    sink = DatabaseSink(write)
    sink.start()
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.append(sink.write(RECORD)))
    thread.start()
    await asyncio.to_thread(thread.join)
    await asyncio.sleep(0)
    await sink.flush()
    assert results == [True] and written == ["flow.started"]
    await sink.aclose()


def test_database_sink_without_loop_refuses() -> None:
    """Outside any event loop, before start, the database sink refuses."""

    async def write(record: dict[str, Any]) -> None:
        pass

    assert DatabaseSink(write).write(RECORD) is False


def test_file_mode_ignores_umask(tmp_path: Path) -> None:
    """Even with a permissive umask the audit file is 0600."""
    old = os.umask(0)
    try:
        FileSink(tmp_path / "a.log")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.log").stat().st_mode) == 0o600
