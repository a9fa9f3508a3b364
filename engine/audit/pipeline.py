"""The audit pipeline: :class:`Auditor` runs a record through its processors into the sinks.

    auditor = Auditor(config.audit, salt, database=store.audit.write)
    auditor.emit("flow.started", outcome="success", user_id=user_id, provider="github")
    bus.subscribe(auditor.on_event)  # every audited engine.events.Event becomes one record

``salt`` is the installation's audit salt: the engine creates it once
(:func:`engine.audit.processors.new_salt`), keeps it in its store and passes it in here.
``emit`` returns whether at least one sink accepted the record; with ``audit.required: true`` it
raises :class:`engine.errors.Unavailable` instead of returning False, so the action fails.

``require_ready`` (called before an action that changes something) raises the same when
``audit.required`` is set and no sink can write now, so the action is refused before it happens.
``reconfigure`` (SIGHUP) applies a new ``audit`` section: sinks added, removed or moved, ``required``
and ``include_user_id``; a sink that stays as it was keeps running (the database queue is not cut).

Sinks write in batches (see :mod:`engine.audit.sinks`), so "accepted" first means "queued". What
``audit.required`` then waits for:

- inside :meth:`Auditor.confirming` (the API's ``audit_guard`` opens it around every request that may
  change something), ``emit`` queues and notes the record; when the handler is done,
  :meth:`Auditor.confirm` awaits the batch writes of every record noted (group commit: the records of
  one loop turn share one write, and the requests waiting on it) and raises ``Unavailable`` (503) when
  one of them was written by no sink. The database sink's write is awaited the same way.
- anywhere else (the scheduler's passes, the CLI, a GET), ``emit`` writes the stdout/file queue at
  once and raises when that failed, as before batching; a database sink counts as accepted when it
  queued the record while not failing (its write is not awaited there).

With ``audit.required: false`` nothing waits: a batch that fails is logged and counted in the sink's
``failed``, and the action stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Iterator, Sequence
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from engine.audit.processors import CachedRedactor, EventAllowlist, UserHasher, stamp_time
from engine.audit.sinks import DatabaseSink, DatabaseWrite, FileSink, Probe, Sink, StdoutSink
from engine.config.model import AuditConfig
from engine.errors import AuditUnavailable, ConfigError
from engine.events import Event, HookCalled, RefreshObserved, WorkerChecked


class Pending:
    """The records a request emitted under ``audit.required``: each one's sink results to await."""

    def __init__(self) -> None:
        self.open = True
        self.records: list[tuple[str, list[Awaitable[bool]]]] = []


_PENDING: contextvars.ContextVar[Pending | None] = contextvars.ContextVar(
    "keyturn_audit_pending", default=None
)


def _event_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    head = {k: event_dict.pop(k) for k in ("time", "event", "outcome") if k in event_dict}
    return {**head, **event_dict}


def _in_loop() -> bool:
    """Whether this thread runs an event loop (a worker thread sees the request's context too)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _unwritten(event: str) -> AuditUnavailable:
    return AuditUnavailable(
        f"audit record {event} could not be written and audit.required is set", retry_after=5
    )


def _same_sink(sink: Sink, name: str, file: str | None) -> bool:
    return sink.name == name and (name != "file" or getattr(sink, "path", None) == file)


class Auditor:
    """Emit audit events to the sinks ``config.sinks`` names.

    ``sinks`` replaces the sinks built from the config (tests, embedding); ``database`` is the
    store's coroutine writing one record (needed when ``config.sinks`` has ``database``, else
    that sink is missing and, when it is the only one, every emit fails to be accepted);
    ``probe`` checks the database while that sink is failing.
    """

    def __init__(
        self,
        config: AuditConfig,
        salt: bytes,
        *,
        database: DatabaseWrite | None = None,
        probe: Probe | None = None,
        sinks: Sequence[Sink] | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.config = config
        self._database, self._probe, self._stdout = database, probe, stdout
        self.sinks: list[Sink] = (
            list(sinks) if sinks is not None else self._build_sinks(config, database, probe, stdout)
        )
        self._hasher = UserHasher(salt, include_user_id=config.include_user_id)
        # called in this order on {outcome, **fields, event} (the dict structlog's msg() would build)
        self.processors: list[Processor] = [
            EventAllowlist(),
            structlog.contextvars.merge_contextvars,  # request_id bound by the API middleware
            stamp_time,  # what TimeStamper(fmt="iso", utc=True, key="time") writes
            self._hasher,
            CachedRedactor(),
            _event_first,
        ]

    @staticmethod
    def _build_sinks(
        config: AuditConfig,
        database: DatabaseWrite | None,
        probe: Probe | None,
        stdout: TextIO | None,
        keep: Sequence[Sink] = (),
    ) -> list[Sink]:
        sinks: list[Sink] = []
        for name in config.sinks:
            kept = next((s for s in keep if _same_sink(s, name, config.file)), None)
            if kept is not None:
                sinks.append(kept)  # unchanged: keep it running
            elif name == "stdout":
                sinks.append(StdoutSink(stdout))
            elif name == "file":
                if not config.file:
                    raise ConfigError("is required when sinks include file", path="audit.file")
                try:
                    sinks.append(FileSink(config.file))
                except OSError as exc:
                    raise ConfigError(
                        f"cannot open {config.file}: {exc.strerror}", path="audit.file"
                    ) from None
            elif name == "database" and database is not None:
                sinks.append(DatabaseSink(database, probe=probe))
        return sinks

    def start(self) -> None:
        """Start the database sink's writer (needs the running loop)."""
        for sink in self.sinks:
            if isinstance(sink, DatabaseSink):
                sink.start()

    async def reconfigure(self, config: AuditConfig) -> None:
        """Apply a new ``audit`` section; ConfigError (old sinks kept) when a new sink cannot open."""
        sinks = self._build_sinks(config, self._database, self._probe, self._stdout, keep=self.sinks)
        dropped = [s for s in self.sinks if s not in sinks]
        self.config = config
        self._hasher.include_user_id = config.include_user_id
        self.sinks = sinks
        self.start()
        for sink in dropped:
            await sink.aclose()

    def on_event(self, event: Event) -> None:
        """The event stream's subscriber: one record per audited event (raises like :meth:`emit`)."""
        if isinstance(event, RefreshObserved | WorkerChecked | HookCalled):
            return  # metrics only
        self.emit(event.name, outcome=event.outcome, **event.fields())

    def __repr__(self) -> str:
        return f"Auditor(sinks={[s.name for s in self.sinks]}, required={self.config.required})"

    def emit(self, event: str, *, outcome: str, **fields: Any) -> bool:
        """Record ``event``; True when at least one sink accepted it.

        Raises ``ValueError`` for an event not in ``engine.audit.events.EVENTS`` (or a bad outcome)
        and :class:`Unavailable` when ``audit.required`` and no sink accepted it.
        """
        record: EventDict = {"outcome": outcome, **fields, "event": event}
        for processor in self.processors:
            record = cast(EventDict, processor(None, "msg", record))
        accepted = [sink for sink in self.sinks if sink.write(record)]  # every sink gets it
        if not self.config.required:
            return bool(accepted)
        pending = _PENDING.get()
        if accepted and pending is not None and pending.open and _in_loop():
            pending.records.append((event, [sink.pending() for sink in accepted]))
            return True
        if not any([sink.sync() for sink in accepted]):
            raise _unwritten(event)
        return True

    @contextlib.contextmanager
    def confirming(self) -> Iterator[Pending]:
        """Note the records emitted in this context (and tasks it starts) for :meth:`confirm`."""
        pending = Pending()
        token = _PENDING.set(pending)
        try:
            yield pending
        finally:
            pending.open = False
            _PENDING.reset(token)

    async def confirm(self, pending: Pending) -> None:
        """Wait until every record noted was written; :class:`Unavailable` when one was written nowhere."""
        for event, results in pending.records:
            written = await asyncio.gather(*results)
            if not any(written):
                raise _unwritten(event)

    def ready(self) -> bool:
        """Whether at least one sink can write a record now."""
        ready = False
        for sink in self.sinks:
            ready = sink.ready() or ready  # every sink is asked (a failing one starts its probe)
        return ready

    def require_ready(self) -> None:
        """With ``audit.required``: raise :class:`Unavailable` when no sink can write now."""
        if self.config.required and not self.ready():
            raise AuditUnavailable(
                "no audit sink can write and audit.required is set; nothing was changed", retry_after=5
            )

    def reopen(self) -> None:
        """Reopen file sinks (SIGHUP after logrotate)."""
        for sink in self.sinks:
            sink.reopen()

    def sync(self) -> None:
        """Write what the stdout and file sinks queue now (the daemon's rare ops records, in log order)."""
        for sink in self.sinks:
            sink.sync()

    async def flush(self) -> None:
        """Write what every sink queues now (the database sink: wait until its queue is written)."""
        self.sync()
        for sink in self.sinks:
            if isinstance(sink, DatabaseSink):
                await sink.flush()

    async def aclose(self) -> None:
        """Write what every sink still queues and close every sink."""
        for sink in self.sinks:
            await sink.aclose()
