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

from collections.abc import Callable, Sequence
from typing import Any

from engine.crypto.cipher import Keyring
from engine.store import models as m
from engine.store.base import Row
from engine.store.keycheck import forget_unused, write_default_check
from engine.store.sealed import Rewrite
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
    await write_default_check(store.meta, keyring)  # values are about to be sealed with it
    total = 0
    for table_name in m.ENCRYPTED:
        key = progress_prefix(keyring) + table_name
        after = await store.meta.get(key) or ""
        while rows := await store.sealed.batch(table_name, after, batch_size):
            total += await store.sealed.rewrite(table_name, rewrites(keyring, table_name, rows))
            after = rows[-1].id
            await store.meta.set(key, after)
            if on_progress is not None:
                on_progress(table_name, total)
    await store.meta.delete_prefix(progress_prefix(keyring))
    await forget_unused(
        store.meta, store.sealed, keyring
    )  # a key id no value uses may later hold another key
    return total


def rewrites(keyring: Keyring, table_name: str, rows: Sequence[Row]) -> list[Rewrite]:
    """One batch's changes: each value not yet under the default key, re-encrypted under it."""
    out: list[Rewrite] = []
    for row in rows:
        for column in m.ENCRYPTED[table_name]:
            blob = getattr(row, column)
            if blob is None or not keyring.needs_rotation(bytes(blob)):
                continue
            new = keyring.reencrypt(bytes(blob), table=table_name, column=column, row_id=row.id)
            out.append(Rewrite(column, row.id, bytes(blob), new))
    return out


async def pending(store: Store, keyring: Keyring | None = None) -> int:
    """How many stored values are not yet under the default key."""
    return await store.sealed.count((keyring or store.keyring).needs_rotation)
