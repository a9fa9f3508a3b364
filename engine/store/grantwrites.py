"""Many refreshes' token writes in one transaction (:meth:`engine.store.grants.GrantRepo.update_tokens_many`).

Rows with the same optional columns are written with one ``executemany``; a row counts as written
when, read back in the same transaction, it holds the sealed access token this call wrote (a grant
written, revoked or deleted since it was read is not: None for it, as ``update_tokens`` answers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from engine.clock import now_utc
from engine.store.outbox import write
from engine.store.records import GrantRecord, TokenUpdate


async def update_tokens_many(repo: Any, updates: Sequence[TokenUpdate]) -> list[GrantRecord | None]:
    """``repo`` (the GrantRepo: its database, table, transaction and row reader) writes ``updates``."""
    if not updates:
        return []
    now = now_utc()
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    sealed: dict[str, bytes] = {}
    for u in updates:
        gid = u.grant_id
        repo.s.grant_cache.drop(gid)
        access = repo.s.seal("grants", "access_token", gid, u.access_token)
        assert access is not None
        sealed[gid] = access
        row: dict[str, Any] = {
            "b_id": gid,
            "b_version": u.expected_version,
            "access_token": access,
            "expires_at": u.expires_at,
            "next_refresh_at": u.next_refresh_at,
            "version": u.expected_version + 1,
        }
        if u.refresh_token is not None:
            row["refresh_token"] = repo.s.seal("grants", "refresh_token", gid, u.refresh_token)
        if u.scopes is not None:
            row["scopes"] = list(u.scopes)
        if u.id_token is not None:
            row["id_token"] = repo.s.seal("grants", "id_token", gid, u.id_token)
        groups.setdefault(tuple(sorted(row)), []).append(row)
    ids = [u.grant_id for u in updates]
    async with repo.tx() as conn:
        for columns, rows in groups.items():
            values: dict[str, Any] = {c: sa.bindparam(c) for c in columns if not c.startswith("b_")}
            values.update(refreshed_at=now, updated_at=now, refresh_failures=0, last_error=None)
            stmt = (
                sa.update(repo.t)
                .where(
                    repo.t.c.id == sa.bindparam("b_id"),
                    repo.t.c.version == sa.bindparam("b_version"),
                    repo.t.c.status == "active",
                )
                .values(**values)
            )
            await conn.execute(stmt, rows)
        found = {r.id: r for r in (await conn.execute(sa.select(repo.t).where(repo.t.c.id.in_(ids)))).all()}
        written = {gid for gid, row in found.items() if bytes(row.access_token) == sealed[gid]}
        events = [u.event for u in updates if u.event is not None and u.grant_id in written]
        for event in events:  # connection.recovered: only with the tokens, in their transaction
            await write(conn, event)
    out: list[GrantRecord | None] = []
    for gid in ids:
        repo.s.grant_cache.drop(gid)
        current = found.get(gid)
        out.append(repo._row(current) if gid in written and current is not None else None)
    if events:
        repo.s.outbox_written()
    return out
