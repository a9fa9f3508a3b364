"""engine.audit.pipeline: Auditor.emit through processors into every sink, required mode, reopen."""

from __future__ import annotations

import asyncio
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import structlog

from engine.audit import Auditor, FileSink, StdoutSink, user_ref
from engine.config.model import AuditConfig
from engine.errors import ConfigError, Unavailable

SALT = bytes(range(32))
TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
OPAQUE = "q9Xw2Lm4Np7Rt1Vy3Bc5Df8Gh0Jk"


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def stdout_auditor(**config: Any) -> tuple[Auditor, io.StringIO]:
    out = io.StringIO()
    return Auditor(AuditConfig(sinks=("stdout",), **config), SALT, stdout=out), out


def test_emit_writes_record_with_user_ref() -> None:
    """A record has time, event, outcome first, user_ref instead of user_id, and the other fields."""
    auditor, out = stdout_auditor()
    assert auditor.emit("flow.started", outcome="success", user_id="alice", provider="github", flow_id="f1")
    [record] = lines(out.getvalue())
    assert list(record)[:4] == ["logger", "time", "event", "outcome"]
    assert record["event"] == "flow.started" and record["outcome"] == "success"
    assert record["user_ref"] == user_ref(SALT, "alice")
    assert (record["provider"], record["flow_id"]) == ("github", "f1")
    assert "user_id" not in record and "alice" not in out.getvalue()


def test_include_user_id_adds_clear_id() -> None:
    """audit.include_user_id adds the clear user id next to user_ref."""
    auditor, out = stdout_auditor(include_user_id=True)
    auditor.emit("tool.executed", outcome="success", user_id="alice", tool="Github.ListRepos")
    [record] = lines(out.getvalue())
    assert record["user_id"] == "alice" and record["user_ref"] == user_ref(SALT, "alice")


def test_token_values_never_appear() -> None:
    """Tokens passed in fields (named, nested, inside text or a URL) never reach a sink."""
    auditor, out = stdout_auditor()
    auditor.emit(
        "grant.refresh_failed",
        outcome="failure",
        provider="github",
        access_token=TOKEN,
        detail=f"provider answered Bearer {OPAQUE}",
        response={"refresh_token": OPAQUE, "items": [TOKEN]},
        url=f"https://api.example/cb?code={OPAQUE}&access_token={OPAQUE}",
    )
    text = out.getvalue()
    assert TOKEN not in text and OPAQUE not in text
    assert lines(text)[0]["provider"] == "github"


def test_request_id_from_context_is_included() -> None:
    """A request id bound by the API middleware (contextvars) is part of the record."""
    auditor, out = stdout_auditor()
    with structlog.contextvars.bound_contextvars(request_id="4f9a1c2be3d04a5f"):
        auditor.emit("api_key.denied", outcome="denied", reason="unknown_key")
    assert lines(out.getvalue())[0]["request_id"] == "4f9a1c2be3d04a5f"


def test_unknown_event_raises_and_writes_nothing() -> None:
    """An event name not in the allowlist raises ValueError before any sink sees it."""
    auditor, out = stdout_auditor()
    with pytest.raises(ValueError, match=r"unknown audit event 'flow\.begun'"):
        auditor.emit("flow.begun", outcome="success")
    assert out.getvalue() == ""


def test_every_sink_gets_the_record(tmp_path: Path) -> None:
    """stdout and file sinks both receive the same record."""
    out = io.StringIO()
    path = tmp_path / "audit.log"
    auditor = Auditor(AuditConfig(sinks=("stdout", "file"), file=str(path)), SALT, stdout=out)
    assert auditor.emit("config.loaded", outcome="success")
    [a] = lines(out.getvalue())
    [b] = lines(path.read_text())
    a.pop("logger")
    assert a == b and b["event"] == "config.loaded"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_database_sink_from_config() -> None:
    """sinks: [database] writes through the store's coroutine, asynchronously."""
    written: list[dict[str, Any]] = []

    async def write(record: dict[str, Any]) -> None:
        written.append(record)

    auditor = Auditor(AuditConfig(sinks=("database",)), SALT, database=write)
    assert auditor.emit("grant.revoked", outcome="success", user_id="u1", provider="slack")
    await auditor.aclose()
    assert written[0]["event"] == "grant.revoked" and written[0]["user_ref"] == user_ref(SALT, "u1")


def test_one_accepting_sink_is_enough() -> None:
    """emit is True when one sink accepts even though another refuses."""
    broken = io.StringIO()
    broken.close()
    good = io.StringIO()
    auditor = Auditor(AuditConfig(required=True), SALT, sinks=[StdoutSink(broken), StdoutSink(good)])
    assert auditor.emit("flow.completed", outcome="success") is True
    assert lines(good.getvalue())[0]["event"] == "flow.completed"


def test_required_raises_when_no_sink_accepted() -> None:
    """With audit.required, no accepting sink raises Unavailable; without it emit returns False."""
    broken = io.StringIO()
    broken.close()
    optional = Auditor(AuditConfig(), SALT, sinks=[StdoutSink(broken)])
    assert optional.emit("flow.started", outcome="success") is False
    required = Auditor(AuditConfig(required=True), SALT, sinks=[StdoutSink(broken)])
    with pytest.raises(Unavailable) as info:
        required.emit("flow.started", outcome="success")
    assert info.value.status == 503 and "audit.required" in info.value.msg


def test_require_ready_when_the_file_cannot_be_written(tmp_path: Path) -> None:
    """audit.required: require_ready raises audit_unavailable once the file's directory is removed."""
    folder = tmp_path / "audit"
    folder.mkdir()
    config = AuditConfig(sinks=("file",), file=str(folder / "audit.log"), required=True)
    auditor = Auditor(config, SALT)
    auditor.require_ready()
    (folder / "audit.log").unlink()
    folder.rmdir()
    with pytest.raises(Unavailable) as info:
        auditor.require_ready()
    assert info.value.status == 503 and info.value.error == "audit_unavailable"
    with pytest.raises(Unavailable):
        auditor.emit("flow.started", outcome="success")
    Auditor(AuditConfig(sinks=("file",), file=str(tmp_path / "x.log")), SALT).require_ready()  # optional


def test_required_database_sink_without_store_refuses() -> None:
    """sinks: [database] with no store writer means nothing accepts: required mode fails the action."""
    auditor = Auditor(AuditConfig(sinks=("database",), required=True), SALT)
    assert auditor.sinks == []
    with pytest.raises(Unavailable):
        auditor.emit("flow.started", outcome="success")


def test_reopen_after_rename(tmp_path: Path) -> None:
    """Auditor.reopen() (SIGHUP) makes the file sink start a new file after logrotate renamed it."""
    path = tmp_path / "audit.log"
    auditor = Auditor(AuditConfig(sinks=("file",), file=str(path)), SALT)
    auditor.emit("flow.started", outcome="success")
    path.rename(tmp_path / "audit.log.1")
    auditor.reopen()
    auditor.emit("flow.completed", outcome="success")
    assert [r["event"] for r in lines((tmp_path / "audit.log.1").read_text())] == ["flow.started"]
    assert [r["event"] for r in lines(path.read_text())] == ["flow.completed"]


def test_file_sink_errors_name_the_key(tmp_path: Path) -> None:
    """A file sink with no path or an unopenable one is a ConfigError at audit.file."""
    with pytest.raises(ConfigError) as info:
        Auditor(AuditConfig(sinks=("file",)), SALT)
    assert info.value.path == "audit.file"
    with pytest.raises(ConfigError, match="cannot open"):
        Auditor(AuditConfig(sinks=("file",), file=str(tmp_path / "no" / "a.log")), SALT)


def test_repr_hides_salt() -> None:
    """The auditor's repr names sinks and mode, never the salt."""
    auditor = Auditor(AuditConfig(), SALT, sinks=[])
    assert SALT.hex() not in repr(auditor) and "required=False" in repr(auditor)


def old_chain_record(salt: bytes, event: str, **kw: Any) -> dict[str, Any]:
    """The record the structlog chain used before built (TimeStamper, wrap_logger), as the sinks saw it."""
    from engine.audit.pipeline import _event_first
    from engine.audit.processors import EventAllowlist, UserHasher
    from engine.logs import Redactor

    seen: list[dict[str, Any]] = []

    class Catch:
        def msg(self, **record: Any) -> None:
            seen.append(record)

    logger = structlog.wrap_logger(
        Catch(),
        processors=[
            EventAllowlist(),
            structlog.contextvars.merge_contextvars,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            UserHasher(salt),
            Redactor(),
            _event_first,
        ],
        wrapper_class=structlog.BoundLogger,
        context_class=dict,
        cache_logger_on_first_use=False,
    )
    logger.msg(event, **kw)
    return seen[0]


def test_record_is_the_one_the_structlog_chain_built() -> None:
    """Fields, their order, user hashing and redaction are those of the structlog chain used before."""
    fields: dict[str, Any] = {
        "outcome": "success",
        "tool": "Github.ListRepos",
        "user_id": "alice",
        "access_token": TOKEN,
        "detail": f"Bearer {OPAQUE} and {TOKEN}",
        "nested": {"refresh_token": "r", "note": OPAQUE, "time": OPAQUE},
        "duration": 0.0012,
    }
    auditor, out = stdout_auditor()
    with structlog.contextvars.bound_contextvars(request_id="abc123"):
        auditor.emit("tool.executed", **fields)
        old = old_chain_record(SALT, "tool.executed", **fields)
    [new] = lines(out.getvalue())
    assert new.pop("logger") == "keyturn.audit"
    assert list(new) == list(old) and {**new, "time": None} == {**old, "time": None}
    assert TOKEN not in out.getvalue() and new["detail"] == "Bearer [redacted] and [redacted]"
    assert new["nested"]["time"] == OPAQUE  # a safe key, as before (only the record's own time is skipped)


def test_time_is_written_as_timestamper_wrote_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """stamp_time writes TimeStamper's ISO UTC text, without a fraction at a whole second."""
    import re

    from engine.audit import processors

    stamp = processors.stamp_time(None, "msg", {})["time"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", stamp)
    monkeypatch.setattr(processors.time, "time_ns", lambda: 1_704_067_200_000_000_000)
    assert processors.stamp_time(None, "msg", {})["time"] == "2024-01-01T00:00:00Z"
    monkeypatch.setattr(processors.time, "time_ns", lambda: 1_704_067_201_000_123_999)
    assert processors.stamp_time(None, "msg", {})["time"] == "2024-01-01T00:00:01.000123Z"


async def test_required_request_fails_when_its_batch_is_not_written() -> None:
    """audit.required inside confirming(): a record queued to a full disk (/dev/full) fails confirm()."""
    auditor = Auditor(AuditConfig(sinks=("file",), file="/dev/full", required=True), SALT)
    auditor.require_ready()  # the file is open and there: ready
    with auditor.confirming() as pending:
        assert auditor.emit("flow.started", outcome="success", user_id="u1", provider="p") is True
    with pytest.raises(Unavailable) as info:
        await auditor.confirm(pending)
    assert info.value.status == 503 and "flow.started" in info.value.msg
    with pytest.raises(Unavailable):
        auditor.require_ready()  # the sink failed: refused until it recovers
    await auditor.aclose()


async def test_required_outside_a_request_writes_at_once(tmp_path: Path) -> None:
    """audit.required outside confirming() (scheduler, CLI): emit writes the record, a failure raises."""
    path = tmp_path / "audit.log"
    good = Auditor(AuditConfig(sinks=("file",), file=str(path), required=True), SALT)
    assert good.emit("flow.started", outcome="success")
    assert lines(path.read_text())[0]["event"] == "flow.started"  # no loop turn needed
    full = Auditor(AuditConfig(sinks=("file",), file="/dev/full", required=True), SALT)
    with pytest.raises(Unavailable):
        full.emit("flow.started", outcome="success")
    await good.aclose()
    await full.aclose()


async def test_optional_audit_does_not_wait_and_counts_the_failure() -> None:
    """audit.required false: the record is queued, emit succeeds, the failed batch is counted afterwards."""
    auditor = Auditor(AuditConfig(sinks=("file",), file="/dev/full"), SALT)
    with auditor.confirming() as pending:
        assert auditor.emit("flow.started", outcome="success") is True
    assert pending.records == []  # nothing to wait for
    await auditor.flush()
    [sink] = auditor.sinks
    assert isinstance(sink, FileSink) and sink.failed == 1
    await auditor.aclose()


async def test_required_request_waits_for_the_database_write() -> None:
    """The first record after the database went down fails the request (not accepted as merely queued)."""
    down = False

    async def write(record: dict[str, Any]) -> None:
        if down:
            raise ConnectionError("database down")

    auditor = Auditor(AuditConfig(sinks=("database",), required=True), SALT, database=write)
    auditor.start()
    with auditor.confirming() as pending:
        auditor.emit("grant.revoked", outcome="success")
    await auditor.confirm(pending)  # written
    down = True
    with auditor.confirming() as pending:
        assert auditor.emit("grant.revoked", outcome="success") is True  # queued while it looked fine
    with pytest.raises(Unavailable):
        await auditor.confirm(pending)
    await auditor.aclose()


async def test_one_loop_turn_of_required_records_shares_one_write(tmp_path: Path) -> None:
    """Group commit: records of several requests in one loop turn are written together, each confirmed."""
    path = tmp_path / "audit.log"
    auditor = Auditor(AuditConfig(sinks=("file",), file=str(path), required=True), SALT)

    async def request(n: int) -> None:
        with auditor.confirming() as pending:
            auditor.emit("tool.executed", outcome="success", tool=f"T.t{n}")
        await auditor.confirm(pending)

    await asyncio.gather(*(request(n) for n in range(8)))
    assert [r["tool"] for r in lines(path.read_text())] == [f"T.t{n}" for n in range(8)]
    await auditor.aclose()


async def test_required_record_from_a_worker_thread_is_written_at_once(tmp_path: Path) -> None:
    """A worker thread started inside confirming() sees it, but writes its record at once (no loop there)."""
    path = tmp_path / "audit.log"
    auditor = Auditor(AuditConfig(sinks=("file",), file=str(path), required=True), SALT)
    with auditor.confirming() as pending:
        assert await asyncio.to_thread(auditor.emit, "flow.started", outcome="success")
    assert pending.records == [] and lines(path.read_text())[0]["event"] == "flow.started"
    await auditor.aclose()
