"""The ``emit(event, outcome=..., **fields)`` hook services take for audit events, and its no-op default."""

from __future__ import annotations

from typing import Any, Protocol


class Emit(Protocol):
    def __call__(self, event: str, *, outcome: str, **fields: Any) -> Any: ...


def noop_emit(event: str, *, outcome: str, **fields: Any) -> None:
    """The default when nobody listens (tests, tools that audit nothing)."""
    return None
