"""engine.store.audit on SQLite and PostgreSQL: events written as rows and listed back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from engine.store import models as m
from engine.store.store import Store


async def test_write_and_list(store_opened: Store) -> None:
    """Known fields become columns, the rest is kept as data; since and limit filter the listing."""
    before = datetime.now(UTC) - timedelta(seconds=1)
    await store_opened.audit.write({"event": "flow.started", "provider": "gh", "user_ref": "u1", "n": 1})
    await store_opened.audit.write({"event": "flow.completed", "outcome": "success", "n": 2})
    events = await store_opened.audit.list(since=before)
    assert [e["event"] for e in events] == ["flow.started", "flow.completed"]
    assert events[0]["provider"] == "gh" and events[0]["n"] == 1 and "time" in events[0]
    assert len(await store_opened.audit.list(limit=1)) == 1
    assert await store_opened.audit.list(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    assert [e["n"] for e in await store_opened.audit.list(user_ref="u1")] == [1]


async def test_every_audit_column_is_filled_from_its_field(store_opened: Store) -> None:
    """Each of the table's own columns takes its field; only the other fields go into data."""
    fields = {c: f"{c}-v" for c in m.AUDIT_COLUMNS}
    await store_opened.audit.write({**fields, "extra": 1})
    async with store_opened.engine.connect() as conn:
        row = (await conn.execute(sa.select(m.audit_events))).one()
    assert {c: getattr(row, c) for c in m.AUDIT_COLUMNS} == fields and row.data == {"extra": 1}
    assert set(m.AUDIT_COLUMNS) == {
        "event",
        "outcome",
        "provider",
        "tool",
        "request_id",
        "user_ref",
        "source_ip",
    }
