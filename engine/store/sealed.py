"""Sealed values across tables (every column in ``models.ENCRYPTED``): which key ids they use, rewrites.

A sealed value starts with ``VERSION | len(key_id) | key_id`` (see :mod:`engine.crypto.cipher`), so the
key ids in use are read from the database itself with two small ``GROUP BY`` queries per sealed column
(first the distinct 2-byte prefixes, then the distinct headers of each length): every row counts, not
a sample. Used by the key check at open (:mod:`engine.store.keycheck`) and by rotation
(:mod:`engine.store.rotate`); neither touches the tables any other way.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa
import structlog

from engine.crypto.cipher import VERSION
from engine.store import models as m
from engine.store.base import Repo, Row

log = structlog.get_logger("keyturn.store")


class Sealed(NamedTuple):
    """One sealed value: where it is and its bytes."""

    table: str
    column: str
    row_id: str
    blob: bytes


class Rewrite(NamedTuple):
    """Replace ``old`` by ``new`` in one column of one row, unless the column changed meanwhile."""

    column: str
    row_id: str
    old: bytes
    new: bytes


def header(key_id: str) -> bytes:
    """The bytes every value sealed with ``key_id`` starts with."""
    kid = key_id.encode("ascii")
    return bytes([VERSION, len(kid)]) + kid


def _prefix(col: Any, length: int) -> Any:
    # the positions as literals, not parameters: PostgreSQL must see the same expression in GROUP BY
    return sa.func.substr(
        col, sa.literal_column("1"), sa.literal_column(str(int(length))), type_=sa.LargeBinary
    )


def _blob(value: bytes) -> Any:
    return sa.literal(value, sa.LargeBinary)


def _columns() -> list[tuple[sa.Table, str]]:
    return [(m.metadata.tables[t], c) for t, columns in m.ENCRYPTED.items() for c in columns]


class SealedRepo(Repo):
    async def key_ids(self) -> dict[str, tuple[int, str]]:
        """Every key id a stored value is sealed with: key id -> (how many values, one ``table.column``)."""
        found: dict[str, tuple[int, str]] = {}
        malformed = 0
        async with self.read() as conn:
            for table, column in _columns():
                col = table.c[column]
                where = f"{table.name}.{column}"
                starts = await conn.execute(
                    sa.select(_prefix(col, 2), sa.func.count())
                    .where(col.is_not(None))
                    .group_by(_prefix(col, 2))
                )
                for start, count in starts.all():
                    start = bytes(start or b"")
                    if len(start) < 2 or start[0] != VERSION or start[1] == 0:
                        malformed += int(count)
                        continue
                    heads = await conn.execute(
                        sa.select(_prefix(col, 2 + start[1]), sa.func.count())
                        .where(_prefix(col, 2) == _blob(start))
                        .group_by(_prefix(col, 2 + start[1]))
                    )
                    for head, many in heads.all():
                        try:
                            kid = bytes(head)[2:].decode("ascii")
                        except UnicodeDecodeError:
                            malformed += int(many)
                            continue
                        if len(kid) != start[1]:
                            malformed += int(many)  # truncated
                            continue
                        total, first = found.get(kid, (0, where))
                        found[kid] = (total + int(many), first)
        if malformed:
            log.warning(
                "sealed_values_malformed",
                count=malformed,
                detail="stored values not in the sealed format: those grants read as unreadable",
            )
        return found

    async def samples(self, key_id: str, per_column: int) -> builtins.list[Sealed]:
        """Up to ``per_column`` values of each sealed column that are sealed with ``key_id``."""
        head = header(key_id)
        out: list[Sealed] = []
        async with self.read() as conn:
            for table, column in _columns():
                col = table.c[column]
                rows = await conn.execute(
                    sa.select(table.c.id, col).where(_prefix(col, len(head)) == _blob(head)).limit(per_column)
                )
                out += [Sealed(table.name, column, row_id, bytes(blob)) for row_id, blob in rows.all()]
        return out

    async def batch(self, table_name: str, after: str, limit: int) -> Sequence[Row]:
        """Rows of ``table_name`` after id ``after`` in id order: the id and each sealed column."""
        table = m.metadata.tables[table_name]
        async with self.read() as conn:
            return (
                await conn.execute(
                    sa.select(table.c.id, *(table.c[c] for c in m.ENCRYPTED[table_name]))
                    .where(table.c.id > after)
                    .order_by(table.c.id)
                    .limit(limit)
                )
            ).all()

    async def rewrite(self, table_name: str, changes: Sequence[Rewrite]) -> int:
        """One transaction; each value is replaced only where the column still holds ``old``."""
        table = m.metadata.tables[table_name]
        rewritten = 0
        async with self.tx() as conn:
            for change in changes:
                result = await conn.execute(
                    sa.update(table)
                    .where(table.c.id == change.row_id, table.c[change.column] == change.old)
                    .values({change.column: change.new})
                )
                rewritten += int(result.rowcount or 0)
        return rewritten

    async def count(self, match: Callable[[bytes], bool]) -> int:
        """How many stored sealed values ``match``."""
        count = 0
        async with self.read() as conn:
            for table, column in _columns():
                col = table.c[column]
                for (blob,) in await conn.execute(sa.select(col).where(col.is_not(None))):
                    if match(bytes(blob)):
                        count += 1
        return count
