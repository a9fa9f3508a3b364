"""The audit pipeline: :class:`Auditor` runs a record through structlog processors into the sinks.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from engine.audit.processors import EventAllowlist, UserHasher
from engine.audit.sinks import DatabaseSink, DatabaseWrite, FileSink, Probe, Sink, StdoutSink
from engine.config.model import AuditConfig
from engine.errors import AuditUnavailable, ConfigError
from engine.events import Event, HookCalled, RefreshObserved, WorkerChecked
from engine.logs import Redactor


class _FanOut:
    """The pipeline's wrapped logger: hands the finished record to every sink."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def msg(self, **record: Any) -> bool:
        accepted = False
        for sink in self.sinks:
            accepted = sink.write(record) or accepted  # every sink gets it, even after one accepted
        return accepted


def _event_first(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    head = {k: event_dict.pop(k) for k in ("time", "event", "outcome") if k in event_dict}
    return {**head, **event_dict}


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
        self._fan_out = _FanOut(self.sinks)
        self.processors: list[Processor] = [
            EventAllowlist(),
            structlog.contextvars.merge_contextvars,  # request_id bound by the API middleware
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
            self._hasher,
            Redactor(),
            _event_first,
        ]
        self._logger = structlog.wrap_logger(
            self._fan_out,
            processors=self.processors,
            wrapper_class=structlog.BoundLogger,
            context_class=dict,
            cache_logger_on_first_use=False,
        )

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
        self.sinks = self._fan_out.sinks = sinks
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
        accepted = bool(self._logger.msg(event, outcome=outcome, **fields))
        if not accepted and self.config.required:
            raise AuditUnavailable(
                f"audit record {event} could not be written and audit.required is set", retry_after=5
            )
        return accepted

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

    async def aclose(self) -> None:
        """Write what the database sink still queues and close every sink."""
        for sink in self.sinks:
            await sink.aclose()
