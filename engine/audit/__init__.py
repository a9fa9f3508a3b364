"""engine.audit: security events as JSON records (see ``pipeline`` for the flow, ``events`` for names)."""

from engine.audit.pipeline import Auditor
from engine.audit.processors import EventAllowlist, UserHasher, new_salt, parse_salt, user_ref
from engine.audit.sinks import DatabaseSink, DatabaseWrite, FileSink, Sink, StdoutSink

__all__ = [
    "Auditor",
    "DatabaseSink",
    "DatabaseWrite",
    "EventAllowlist",
    "FileSink",
    "Sink",
    "StdoutSink",
    "UserHasher",
    "new_salt",
    "parse_salt",
    "user_ref",
]
