"""PostgreSQL for tests: a fresh database per test at 127.0.0.1:5432 (user postgres, trust auth).

Tests that need it skip with a clear message when PostgreSQL does not answer, and fail under
``CI=true``, where it must run.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from typing import Any

import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def _admin_connect() -> object:
    import asyncpg

    try:
        return await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        reason = f"PostgreSQL does not answer at 127.0.0.1:5432 ({type(exc).__name__})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; it is required under CI=true")
        pytest.skip(reason)


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """Create an empty database and yield its SQLAlchemy URL; drop it afterwards."""
    conn: Any = await _admin_connect()
    name = f"kt_test_{secrets.token_hex(6)}"
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A SQLAlchemy URL for a new, empty PostgreSQL database, dropped after the test."""
    async with fresh_database() as url:
        yield url
