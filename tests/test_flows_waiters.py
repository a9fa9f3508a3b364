"""Long-poll waiters: in-process events and PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from engine.flows.waiters import CHANNEL, FlowWaiters, PgFlowListener, asyncpg_dsn

PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def test_notify_wakes_every_waiter_of_a_flow() -> None:
    """Two waiters on one flow both wake promptly when it is notified; others keep waiting."""
    waiters = FlowWaiters()
    a = asyncio.create_task(waiters.wait("fl_1", 5))
    b = asyncio.create_task(waiters.wait("fl_1", 5))
    c = asyncio.create_task(waiters.wait("fl_2", 0.3))
    await asyncio.sleep(0.01)
    assert len(waiters) == 3
    start = time.monotonic()
    waiters.notify("fl_1")
    assert await a and await b
    assert time.monotonic() - start < 0.5
    assert not await c
    assert len(waiters) == 0


async def test_notify_between_watch_and_wait_is_not_lost() -> None:
    """A completion notified while the caller still reads the flow (after watch, before wait) wakes it."""
    waiters = FlowWaiters()
    with waiters.watch("fl_1") as watch:
        waiters.notify("fl_1")  # lands during the caller's read
        start = time.monotonic()
        assert await watch.wait(5)
        assert time.monotonic() - start < 0.5
    assert len(waiters) == 0
    with waiters.watch("fl_1") as watch:  # a later watch waits for a later notify
        assert not await watch.wait(0.05)
    assert len(waiters) == 0


async def test_timeout_returns_false_and_cleans_up() -> None:
    """A wait that times out answers False and leaves nothing behind."""
    waiters = FlowWaiters()
    assert not await waiters.wait("fl_x", 0.05)
    assert len(waiters) == 0


async def test_ten_thousand_idle_waiters_cost_no_io() -> None:
    """10,000 idle waiters are just events; a notify of one flow wakes only its waiters."""
    waiters = FlowWaiters()
    tasks = [asyncio.create_task(waiters.wait(f"fl_{i}", 10)) for i in range(10_000)]
    await asyncio.sleep(0.05)
    assert len(waiters) == 10_000
    waiters.notify("fl_42")
    assert await tasks[42]
    waiters.notify_all()
    assert all(await asyncio.gather(*tasks))


def test_asyncpg_dsn() -> None:
    """SQLAlchemy's asyncpg URL is turned into asyncpg's DSN."""
    assert asyncpg_dsn("postgresql+asyncpg://u@h/db") == "postgresql://u@h/db"


async def _pg_available() -> bool:
    import asyncpg

    try:
        conn = await asyncpg.connect(asyncpg_dsn(PG_URL), timeout=2)
    except Exception:
        return False
    await conn.close()
    return True


@pytest.mark.postgres
async def test_pg_notify_from_another_connection_wakes_waiter() -> None:
    """A NOTIFY sent by another replica's connection wakes this process's waiter."""
    import asyncpg

    if not await _pg_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is required under CI=true")
        pytest.skip("PostgreSQL does not answer at 127.0.0.1:5432")
    waiters = FlowWaiters()
    listener = PgFlowListener(PG_URL, waiters)
    await listener.start()
    try:
        assert listener.connected.is_set()
        task = asyncio.create_task(waiters.wait("fl_pg", 5))
        await asyncio.sleep(0.05)
        other = await asyncpg.connect(asyncpg_dsn(PG_URL))
        try:
            await other.execute("SELECT pg_notify($1, $2)", CHANNEL, "fl_pg")
        finally:
            await other.close()
        assert await asyncio.wait_for(task, 2)
    finally:
        await listener.stop()
