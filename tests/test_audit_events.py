"""engine.audit.events: every audited event name of the typed stream is described, and nothing else."""

from __future__ import annotations

from engine.audit.events import EVENTS
from engine.events import AUDIT_NAMES


def test_descriptions_match_the_event_stream_names() -> None:
    """EVENTS describes exactly engine.events.AuditName: a new event cannot go unlisted (or undescribed)."""
    assert set(EVENTS) == AUDIT_NAMES
    assert all(EVENTS.values())
