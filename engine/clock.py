"""The one clock: timezone-aware UTC now (every layer uses this one)."""

from __future__ import annotations

from datetime import UTC, datetime


def now_utc() -> datetime:
    return datetime.now(UTC)
