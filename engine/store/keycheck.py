"""Refuse a wrong root key at start: every key id in use is configured, and each is the right key.

A sealed value starts with ``VERSION | len(key_id) | key_id`` (see :mod:`engine.crypto.cipher`), so the
key ids in use are read from the database itself with two small ``GROUP BY`` queries per sealed column
(first the distinct 2-byte prefixes, then the distinct headers of each length): every row counts, not
a sample.

Each key id has a check value in ``meta`` (``key_check:<sha256(key id)>``, an HMAC of a fixed label
under the key), written when the key is first seen: the default key at once, an older key once a
value sealed with it has been decrypted. A configured key whose check value differs is refused,
naming its id (never its value), before anything is read or written with it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog
from sqlalchemy.exc import IntegrityError

from engine.crypto.cipher import VERSION, DecryptError, Keyring, UnknownKeyError, WrongKeyError
from engine.crypto.keys import DEV_KEY_ID
from engine.store import models as m
from engine.store.db import READ_ONLY

if TYPE_CHECKING:
    from engine.store.store import Store

log = structlog.get_logger("keyturn.store")

CHECK_PREFIX = "key_check:"
SAMPLES = 5  # values per column tried when a key id in use has no check value yet


def check_key(key_id: str) -> str:
    """The ``meta`` key of a key id's check value (``meta.key`` is 64 characters; a key id may be too)."""
    return CHECK_PREFIX + hashlib.sha256(key_id.encode()).hexdigest()[:40]


def _header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return bytes([VERSION, len(kid)]) + kid


def _prefix(col: Any, length: int) -> Any:
    # the positions as literals, not parameters: PostgreSQL must see the same expression in GROUP BY
    return sa.func.substr(
        col, sa.literal_column("1"), sa.literal_column(str(int(length))), type_=sa.LargeBinary
    )


def _blob(value: bytes) -> Any:
    return sa.literal(value, sa.LargeBinary)


async def key_ids_in_use(store: Store) -> dict[str, tuple[int, str]]:
    """Every key id a stored value is sealed with: key id -> (how many values, one ``table.column``)."""
    found: dict[str, tuple[int, str]] = {}
    malformed = 0
    async with store.engine.connect() as conn:
        conn = await conn.execution_options(**{READ_ONLY: True})
        for table_name, columns in m.ENCRYPTED.items():
            table = m.metadata.tables[table_name]
            for column in columns:
                col = table.c[column]
                where = f"{table_name}.{column}"
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
                    n = 2 + start[1]
                    heads = await conn.execute(
                        sa.select(_prefix(col, n), sa.func.count())
                        .where(_prefix(col, 2) == _blob(start))
                        .group_by(_prefix(col, n))
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


async def check_keys(store: Store) -> None:
    """Refuse to start on a key id in use that is not configured, or a configured key that is wrong."""
    keyring = store.keyring
    in_use = await key_ids_in_use(store)
    for kid, (count, where) in sorted(in_use.items()):
        if kid not in keyring.key_ids:
            raise UnknownKeyError(
                f"{where} holds values sealed with key {kid!r} ({count} values in all), which is not in "
                "security.root_keys: add that key (not as default) to read them"
            )
    for kid in sorted(keyring.key_ids):
        stored = await _stored_check(store, kid)
        if stored is not None:
            if not hmac.compare_digest(stored, keyring.check_value(kid)):
                raise WrongKeyError(_wrong_key(kid))
            continue
        if kid in in_use and not await _a_value_opens(store, keyring, kid):
            raise WrongKeyError(_wrong_key(kid))
        if kid in in_use or kid == keyring.default_id:
            await _write_check(store, keyring, kid)


async def write_default_check(store: Store, keyring: Keyring) -> None:
    """Make sure ``keyring``'s default key has its check value (before values are sealed with it)."""
    stored = await _stored_check(store, keyring.default_id)
    if stored is None:
        await _write_check(store, keyring, keyring.default_id)
    elif not hmac.compare_digest(stored, keyring.check_value(keyring.default_id)):
        raise WrongKeyError(_wrong_key(keyring.default_id))


async def forget_unused(store: Store, keyring: Keyring) -> int:
    """Drop check values of key ids no stored value uses any more (after a rotation), but the default's."""
    in_use = await key_ids_in_use(store)
    dropped = 0
    for kid in sorted(keyring.key_ids):
        if kid in in_use or kid == keyring.default_id:
            continue
        async with store.engine.begin() as conn:
            result = await conn.execute(sa.delete(m.meta).where(m.meta.c.key == check_key(kid)))
        dropped += int(result.rowcount or 0)
    return dropped


def _wrong_key(kid: str) -> str:
    hint = (
        ": the development key file beside the database was deleted or replaced; restore the original file"
        if kid == DEV_KEY_ID
        else f": configure the original key under id {kid!r}"
    )
    return (
        f"root key {kid!r} is not the key this database's values were sealed with (its check value does "
        f"not match){hint}"
    )


async def _stored_check(store: Store, kid: str) -> str | None:
    raw = await store.meta.get(check_key(kid))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        value = data["check"]
    except (ValueError, KeyError, TypeError):
        raise WrongKeyError(f"the check value of root key {kid!r} in the database is corrupt") from None
    return str(value)


async def _write_check(store: Store, keyring: Keyring, kid: str) -> None:
    value = json.dumps({"key_id": kid, "check": keyring.check_value(kid)})
    try:
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(m.meta).values(key=check_key(kid), value=value))
    except IntegrityError:  # another replica wrote it first: it must agree
        stored = await _stored_check(store, kid)
        if stored is None or not hmac.compare_digest(stored, keyring.check_value(kid)):
            raise WrongKeyError(_wrong_key(kid)) from None


async def _a_value_opens(store: Store, keyring: Keyring, kid: str) -> bool:
    """Whether some value sealed with ``kid`` decrypts (a database from before check values)."""
    head = _header(kid)
    async with store.engine.connect() as conn:
        conn = await conn.execution_options(**{READ_ONLY: True})
        for table_name, columns in m.ENCRYPTED.items():
            table = m.metadata.tables[table_name]
            for column in columns:
                col = table.c[column]
                rows = await conn.execute(
                    sa.select(table.c.id, col).where(_prefix(col, len(head)) == _blob(head)).limit(SAMPLES)
                )
                for row_id, blob in rows.all():
                    try:
                        keyring.decrypt(bytes(blob), table=table_name, column=column, row_id=row_id)
                    except DecryptError:
                        continue
                    return True
    return False
