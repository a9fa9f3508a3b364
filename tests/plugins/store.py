"""Store fixtures: every store test runs on SQLite (a file in tmp_path) and on PostgreSQL.

PostgreSQL is 127.0.0.1:5432, user postgres, trust auth; each test gets a database of its own,
dropped afterwards. When PostgreSQL does not answer, the PostgreSQL half is skipped with the reason,
except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from engine.crypto.cipher import Keyring
from engine.store.records import FlowRecord, GrantRecord
from engine.store.store import Store
from tests.plugins.pg import fresh_database
from tests.plugins.token_scan import remember

# recognisable tokens for raw-byte checks; the end-of-suite scan looks for them in every database file
STORE_TOKEN = remember("gho_storetest_secret_value_123456789")
STORE_REFRESH = remember("rt-" + STORE_TOKEN)


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A SQLAlchemy URL of an empty database: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/store.db"
        return
    async with fresh_database() as url:
        yield url


@pytest.fixture
def store_keyring() -> Keyring:
    """A keyring with one random default key, ``k1``."""
    return Keyring({"k1": os.urandom(32)}, "k1")


@pytest.fixture
async def store_opened(store_url: str, store_keyring: Keyring) -> AsyncIterator[Store]:
    """A migrated store on ``store_url``, closed after the test."""
    store = await Store.open(store_url, store_keyring)
    yield store
    await store.close()


async def store_grant(store: Store, user: str = "u1", provider: str = "p", **over: Any) -> GrantRecord:
    """Upsert a grant with plausible values; keyword arguments override them."""
    values: dict[str, Any] = dict(
        access_token=STORE_TOKEN,
        refresh_token=STORE_REFRESH,
        id_token=None,
        token_type="Bearer",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
        scopes=["a"],
        subject="s",
        user_info={"sub": "s"},
        token_metadata={"instance_url": "https://x"},
        next_refresh_at=None,
    )
    values.update(over)
    return await store.grants.upsert(user, provider, **values)


async def store_flow(store: Store, **over: Any) -> FlowRecord:
    """Create a pending flow expiring in ten minutes; keyword arguments override its values."""
    values: dict[str, Any] = dict(
        user_id="u",
        provider_id="p",
        scopes=["a"],
        code_verifier="v" * 50,
        nonce="n-" + secrets.token_hex(8),
        redirect_uri="http://127.0.0.1/cb",
        next_uri=None,
        expires_at=datetime.now(UTC) + timedelta(minutes=10),
    )
    values.update(over)
    return await store.flows.create(**values)


@contextlib.contextmanager
def database_errors(store: Store) -> Iterator[list[str]]:
    """Every error the database raised while inside (class names): a race must leave it empty."""
    seen: list[str] = []

    def record(context: Any) -> None:
        seen.append(type(context.original_exception).__name__)

    event.listen(store.engine.sync_engine, "handle_error", record)
    try:
        yield seen
    finally:
        event.remove(store.engine.sync_engine, "handle_error", record)
