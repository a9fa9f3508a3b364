"""Many refreshes' token writes in one transaction (:meth:`engine.store.grants.GrantRepo.update_tokens_many`).

A row counts as written when, read back in the same transaction, it holds the sealed access token
this call wrote (a grant written, revoked or deleted since it was read is not: None for it, as
``update_tokens`` answers). On PostgreSQL the whole batch is one ``UPDATE ... FROM unnest(...)
RETURNING`` (the rows come back from the statement itself: one round trip, one compiled statement);
elsewhere rows with the same optional columns are written with one ``executemany`` and read back.
A value not given (refresh token, id token, scopes) keeps the stored one either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
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
        if conn.dialect.name == "postgresql":
            params = _pg_params(groups, now)
            returned = (await conn.execute(_UPDATE_PG.columns(*repo.t.c), params)).all()
            found = {r.id: r for r in returned}
        else:
            found = await _update_grouped(repo, conn, groups, ids, now)
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


async def _update_grouped(
    repo: Any, conn: Any, groups: dict[tuple[str, ...], list[dict[str, Any]]], ids: list[str], now: datetime
) -> dict[str, Any]:
    """SQLite: one ``executemany`` per set of columns, then the rows read back."""
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
    return {r.id: r for r in (await conn.execute(sa.select(repo.t).where(repo.t.c.id.in_(ids)))).all()}


def _pg_params(groups: dict[tuple[str, ...], list[dict[str, Any]]], now: datetime) -> dict[str, Any]:
    rows = [row for group in groups.values() for row in group]
    scopes = [json.dumps(r["scopes"]) if "scopes" in r else None for r in rows]
    return {
        "ids": [r["b_id"] for r in rows],
        "versions": [r["b_version"] for r in rows],
        "access": [r["access_token"] for r in rows],
        "refresh": [r.get("refresh_token") for r in rows],
        "id_tokens": [r.get("id_token") for r in rows],
        "scopes": scopes,
        "expires": [r["expires_at"] for r in rows],
        "next": [r["next_refresh_at"] for r in rows],
        "now": now,
    }


_UPDATE_PG = sa.text(
    "UPDATE grants AS g SET access_token = v.access_token,"
    " refresh_token = COALESCE(v.refresh_token, g.refresh_token),"
    " id_token = COALESCE(v.id_token, g.id_token),"
    " scopes = COALESCE(CAST(v.scopes AS JSON), g.scopes),"
    " expires_at = v.expires_at, next_refresh_at = v.next_refresh_at, version = g.version + 1,"
    " refreshed_at = :now, updated_at = :now, refresh_failures = 0, last_error = NULL"
    " FROM unnest(CAST(:ids AS VARCHAR[]), CAST(:versions AS INTEGER[]), CAST(:access AS BYTEA[]),"
    " CAST(:refresh AS BYTEA[]), CAST(:id_tokens AS BYTEA[]), CAST(:scopes AS TEXT[]),"
    " CAST(:expires AS TIMESTAMPTZ[]), CAST(:next AS TIMESTAMPTZ[]))"
    " AS v(id, version, access_token, refresh_token, id_token, scopes, expires_at, next_refresh_at)"
    " WHERE g.id = v.id AND g.version = v.version AND g.status = 'active'"
    " RETURNING g.*"
).bindparams(
    sa.bindparam("ids", type_=sa.ARRAY(sa.String)),
    sa.bindparam("versions", type_=sa.ARRAY(sa.Integer)),
    sa.bindparam("access", type_=sa.ARRAY(sa.LargeBinary)),
    sa.bindparam("refresh", type_=sa.ARRAY(sa.LargeBinary)),
    sa.bindparam("id_tokens", type_=sa.ARRAY(sa.LargeBinary)),
    sa.bindparam("scopes", type_=sa.ARRAY(sa.Text)),
    sa.bindparam("expires", type_=sa.ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("next", type_=sa.ARRAY(sa.DateTime(timezone=True))),
    sa.bindparam("now", type_=sa.DateTime(timezone=True)),
)
