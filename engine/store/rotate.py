"""``keyturn keys rotate``: re-encrypt every stored secret under the default root key, online.

Rows are read in batches in id order; each batch is one transaction that rewrites only values not
yet under the default key, and only where the column still holds the ciphertext that was read.
That per-value check is the batch's version check: a concurrent refresh that wrote a new token in
between wins (its value is already under the default key). Rotation deliberately does not bump
``grants.version``: a refresher holding the version it read must still be able to save tokens the
provider has just rotated, or the new refresh token would be lost.

Progress (the last id done per table, under ``rotate:<key id>:<table>`` in ``meta``) is written
after each batch, so an interrupted run resumes where it stopped; a run that finishes clears it.

Check values (:mod:`engine.store.keycheck`): the new default key's is written before the first value
is sealed with it; once no value uses an old key id any more, that id's check value is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from engine.crypto.cipher import Keyring
from engine.store import models as m
from engine.store.db import READ_ONLY
from engine.store.keycheck import forget_unused, write_default_check
from engine.store.store import Store

Progress = Callable[[str, int], Any]  # (table, values rewritten so far) -> anything; may raise to stop


def progress_prefix(keyring: Keyring) -> str:
    return f"rotate:{keyring.default_id}:"


async def rotate(
    store: Store,
    keyring: Keyring | None = None,
    *,
    batch_size: int = 500,
    on_progress: Progress | None = None,
) -> int:
    """Re-encrypt under ``keyring.default_id``; returns how many values were rewritten by this run."""
    keyring = keyring or store.keyring
    await write_default_check(store, keyring)  # values are about to be sealed with it
    total = 0
    for table_name, columns in m.ENCRYPTED.items():
        table = m.metadata.tables[table_name]
        key = progress_prefix(keyring) + table_name
        after = await store.meta.get(key) or ""
        while True:
            async with store.engine.connect() as conn:
                conn = await conn.execution_options(**{READ_ONLY: True})
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
            total += await _rewrite(store, keyring, table, columns, rows)
            after = rows[-1].id
            await store.meta.set(key, after)
            if on_progress is not None:
                on_progress(table_name, total)
    await store.meta.delete_prefix(progress_prefix(keyring))
    await forget_unused(store, keyring)  # a key id no value uses any more may later hold another key
    return total


async def _rewrite(
    store: Store, keyring: Keyring, table: sa.Table, columns: tuple[str, ...], rows: Any
) -> int:
    """One batch, one transaction: each value moves to the default key unless it changed meanwhile."""
    rewritten = 0
    async with store.engine.begin() as conn:
        for row in rows:
            for column in columns:
                blob = getattr(row, column)
                if blob is None or not keyring.needs_rotation(bytes(blob)):
                    continue
                new = keyring.reencrypt(bytes(blob), table=table.name, column=column, row_id=row.id)
                result = await conn.execute(
                    sa.update(table)
                    .where(table.c.id == row.id, table.c[column] == blob)
                    .values({column: new})
                )
                rewritten += int(result.rowcount or 0)
    return rewritten


async def pending(store: Store, keyring: Keyring | None = None) -> int:
    """How many stored values are not yet under the default key."""
    keyring = keyring or store.keyring
    count = 0
    async with store.engine.connect() as conn:
        conn = await conn.execution_options(**{READ_ONLY: True})
        for table_name, columns in m.ENCRYPTED.items():
            table = m.metadata.tables[table_name]
            for column in columns:
                col = table.c[column]
                for (blob,) in await conn.execute(sa.select(col).where(col.is_not(None))):
                    if keyring.needs_rotation(bytes(blob)):
                        count += 1
    return count
