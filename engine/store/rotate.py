"""``keyturn keys rotate``: re-encrypt every stored secret under the default root key, online.

Rows are read in batches by id; each batch is one transaction that rewrites only values not yet
under the default key, and only if the row's ciphertext is unchanged since it was read (a
concurrent refresh wins; its new value is already under the default key). Progress (the last id
done per table) is kept in ``meta`` so an interrupted run resumes where it stopped; a finished run
clears it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine.crypto.cipher import Keyring
from engine.store import models as m
from engine.store.store import Store

Progress = Callable[[str, int], Any]  # (table, rows rewritten so far) -> anything; may raise to stop


async def rotate(
    store: Store,
    keyring: Keyring | None = None,
    *,
    batch_size: int = 500,
    on_progress: Progress | None = None,
) -> int:
    """Re-encrypt under ``keyring.default_id``; returns how many values were rewritten."""
    keyring = keyring or store.keyring
    total = 0
    for table_name, columns in m.ENCRYPTED.items():
        table = m.metadata.tables[table_name]
        key = f"rotate:{keyring.default_id}:{table_name}"
        after = await store.meta.get(key) or ""
        while True:
            async with store.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        sa.select(table.c.id, *(table.c[c] for c in columns))
                        .where(table.c.id > after)
                        .order_by(table.c.id)
                        .limit(batch_size)
                    )
                ).all()
            if not rows:
                break
            rewritten = 0
            async with store.engine.begin() as conn:
                for row in rows:
                    for column in columns:
                        blob = getattr(row, column)
                        if blob is None or not keyring.needs_rotation(bytes(blob)):
                            continue
                        new = keyring.reencrypt(bytes(blob), table=table_name, column=column, row_id=row.id)
                        result = await conn.execute(
                            sa.update(table)
                            .where(table.c.id == row.id, table.c[column] == blob)
                            .values({column: new})
                        )
                        rewritten += int(result.rowcount or 0)
            after = rows[-1].id
            await store.meta.set(key, after)
            total += rewritten
            if on_progress is not None:
                on_progress(table_name, total)
        await store.meta.set(key, "\uffff")  # this table is done for this key
    return total


async def pending(store: Store, keyring: Keyring | None = None) -> int:
    """How many stored values are not yet under the default key."""
    keyring = keyring or store.keyring
    count = 0
    async with store.engine.connect() as conn:
        for table_name, columns in m.ENCRYPTED.items():
            table = m.metadata.tables[table_name]
            for column in columns:
                col = table.c[column]
                for (blob,) in await conn.execute(sa.select(col).where(col.is_not(None))):
                    if keyring.needs_rotation(bytes(blob)):
                        count += 1
    return count
