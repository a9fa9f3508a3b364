"""engine.audit.lines: JSON lines queued in the event loop and written once per loop turn, batch results."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from engine.audit.lines import FileSink, StdoutSink, encode

RECORD = {"time": "2024-01-01T00:00:00Z", "event": "flow.started", "outcome": "success"}


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


class CountingFileSink(FileSink):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: list[int] = []

    def _put(self, data: bytes) -> None:
        self.writes.append(data.count(b"\n"))
        super()._put(data)


async def test_lines_of_one_loop_turn_are_written_together(tmp_path: Path) -> None:
    """Records written during one loop turn land in the file with one write, in order, at the next turn."""
    path = tmp_path / "audit.log"
    sink = CountingFileSink(path)
    assert all(sink.write({**RECORD, "n": n}) for n in range(5))
    assert path.read_text() == ""  # queued, not yet written
    assert await sink.pending() is True
    assert sink.writes == [5] and [r["n"] for r in read_lines(path)] == [0, 1, 2, 3, 4]
    sink.write({**RECORD, "n": 5})
    await asyncio.sleep(0)
    assert sink.writes == [5, 1]
    await sink.aclose()


async def test_pending_with_nothing_queued_is_done(tmp_path: Path) -> None:
    """With no line queued, pending() is already done: True while the sink works."""
    sink = FileSink(tmp_path / "audit.log")
    done = sink.pending()
    assert done.done() and done.result() is True
    await sink.aclose()


async def test_full_disk_fails_the_batch_and_the_sink(capsys: pytest.CaptureFixture[str]) -> None:
    """/dev/full as the file: the batch fails, its lines are counted and logged, the sink refuses."""
    sink = FileSink("/dev/full")
    assert sink.ready() and sink.write(RECORD) and sink.write(RECORD)
    assert await sink.pending() is False
    assert sink.failed == 2 and sink.failing
    assert sink.ready() is False and sink.write(RECORD) is False  # until a retry, once a second
    assert "audit_file_write_failed" in capsys.readouterr().out
    await sink.aclose()


async def test_failed_sink_recovers_once_reopening_works(tmp_path: Path) -> None:
    """After a failed write the sink is tried again (at most once a second) and accepts once it works."""
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    sink.failing, sink._failed_at = True, float("-inf")  # as after a failed write, a second ago
    assert sink.ready() and not sink.failing
    assert sink.write(RECORD) and await sink.pending() is True
    assert read_lines(path)[0]["event"] == "flow.started"
    await sink.aclose()


async def test_directory_removed_before_the_batch_fails_it(tmp_path: Path) -> None:
    """A line queued just before the file's directory is removed is not written: its batch says False."""
    folder = tmp_path / "logs"
    folder.mkdir()
    sink = FileSink(folder / "audit.log")
    assert sink.write(RECORD)
    (folder / "audit.log").unlink()
    folder.rmdir()
    assert await sink.pending() is False and sink.failed == 1
    await sink.aclose()


async def test_reopen_and_aclose_write_the_queue_first(tmp_path: Path) -> None:
    """Lines queued before a reopen go to the old file; aclose writes what is still queued."""
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    sink.write(RECORD)
    path.rename(tmp_path / "audit.log.1")
    sink.reopen()
    sink.write({**RECORD, "event": "flow.completed"})
    await sink.aclose()
    assert [r["event"] for r in read_lines(tmp_path / "audit.log.1")] == ["flow.started"]
    assert [r["event"] for r in read_lines(path)] == ["flow.completed"]


async def test_sync_writes_the_queue_now(tmp_path: Path) -> None:
    """sync() writes what is queued at once and says whether it was written."""
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    sink.write(RECORD)
    assert sink.sync() is True and len(read_lines(path)) == 1
    await sink.aclose()


async def test_stdout_sink_batches_and_closed_stream_refuses() -> None:
    """The stdout sink writes a loop turn's lines together; a closed stream refuses at once."""
    out = io.StringIO()
    sink = StdoutSink(out)
    assert sink.write(RECORD) and sink.write(RECORD) and out.getvalue() == ""
    assert await sink.pending() is True
    assert [json.loads(line)["logger"] for line in out.getvalue().splitlines()] == ["keyturn.audit"] * 2
    out.close()
    assert sink.write(RECORD) is False and sink.ready() is False


async def test_write_from_another_thread_is_written_at_once(tmp_path: Path) -> None:
    """A record from a worker thread (no loop there) is written immediately, after the loop's queue."""
    path = tmp_path / "audit.log"
    sink = FileSink(path)
    sink.write(RECORD)  # queued on the loop
    assert await asyncio.to_thread(sink.write, {**RECORD, "event": "flow.completed"})
    assert [r["event"] for r in read_lines(path)] == ["flow.started", "flow.completed"]
    await sink.aclose()


def test_encoding_matches_the_json_module() -> None:
    """orjson's line parses to what json.dumps wrote; values orjson refuses fall back to json."""
    record = {"time": "t", "event": "e", "n": 1, "f": 0.00123, "tiny": 1e-05, "s": "é\u2028", "l": [1, "x"]}
    old = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    assert json.loads(encode(record)) == json.loads(old)
    assert list(json.loads(encode(record))) == list(record)  # same members, same order
    huge = {"n": 2**70, "k": {1: "a"}}
    assert encode(huge).decode() == json.dumps(huge, ensure_ascii=False, separators=(",", ":"))


def test_lines_still_queued_at_interpreter_exit_are_written(tmp_path: Path) -> None:
    """A process whose loop stopped before the queued batch ran still writes it at exit (atexit)."""
    import subprocess
    import sys

    path = tmp_path / "audit.log"
    code = (
        "import asyncio\n"
        "from engine.audit.lines import FileSink\n"
        f"sink = FileSink({str(path)!r})\n"
        "loop = asyncio.new_event_loop()\n"
        "def emit():\n"
        "    sink.write({'event': 'flow.started', 'outcome': 'success'})\n"
        "    loop.stop()\n"  # the loop ends with this turn: the batch's call_soon never runs
        "loop.call_soon(emit)\n"
        "loop.run_forever()\n"
        f"assert open({str(path)!r}).read() == ''\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1], timeout=60)
    assert [r["event"] for r in read_lines(path)] == ["flow.started"]
