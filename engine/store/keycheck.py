"""Refuse a wrong root key at start: every key id in use is configured, and each is the right key.

The key ids in use come from the sealed values themselves (:meth:`SealedRepo.key_ids`). Each key id
has a check value in ``meta`` (``key_check:<sha256(key id)>``, an HMAC of a fixed label under the
key), written when the key is first seen: the default key at once, an older key once a value sealed
with it has been decrypted. A configured key whose check value differs is refused, naming its id
(never its value), before anything is read or written with it.

Everything here goes through the repositories (``meta`` and ``sealed``).
"""

from __future__ import annotations

import hashlib
import hmac
import json

from engine.crypto.cipher import DecryptError, Keyring, UnknownKeyError, WrongKeyError
from engine.crypto.keys import DEV_KEY_ID
from engine.store.meta import MetaRepo
from engine.store.sealed import SealedRepo

CHECK_PREFIX = "key_check:"
SAMPLES = 5  # values per column tried when a key id in use has no check value yet


def check_key(key_id: str) -> str:
    """The ``meta`` key of a key id's check value (``meta.key`` is 64 characters; a key id may be too)."""
    return CHECK_PREFIX + hashlib.sha256(key_id.encode()).hexdigest()[:40]


async def check_keys(meta: MetaRepo, sealed: SealedRepo, keyring: Keyring) -> None:
    """Refuse to start on a key id in use that is not configured, or a configured key that is wrong."""
    in_use = await sealed.key_ids()
    for kid, (count, where) in sorted(in_use.items()):
        if kid not in keyring.key_ids:
            raise UnknownKeyError(
                f"{where} holds values sealed with key {kid!r} ({count} values in all), which is not in "
                "security.root_keys: add that key (not as default) to read them"
            )
    for kid in sorted(keyring.key_ids):
        stored = await _stored_check(meta, kid)
        if stored is not None:
            if not hmac.compare_digest(stored, keyring.check_value(kid)):
                raise WrongKeyError(_wrong_key(kid))
            continue
        if kid in in_use and not await _a_value_opens(sealed, keyring, kid):
            raise WrongKeyError(_wrong_key(kid))
        if kid in in_use or kid == keyring.default_id:
            await _write_check(meta, keyring, kid)


async def write_default_check(meta: MetaRepo, keyring: Keyring) -> None:
    """Make sure ``keyring``'s default key has its check value (before values are sealed with it)."""
    stored = await _stored_check(meta, keyring.default_id)
    if stored is None:
        await _write_check(meta, keyring, keyring.default_id)
    elif not hmac.compare_digest(stored, keyring.check_value(keyring.default_id)):
        raise WrongKeyError(_wrong_key(keyring.default_id))


async def forget_unused(meta: MetaRepo, sealed: SealedRepo, keyring: Keyring) -> int:
    """Drop check values of key ids no stored value uses any more (after a rotation), but the default's."""
    in_use = await sealed.key_ids()
    dropped = 0
    for kid in sorted(keyring.key_ids):
        if kid not in in_use and kid != keyring.default_id:
            dropped += await meta.delete(check_key(kid))
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


async def _stored_check(meta: MetaRepo, kid: str) -> str | None:
    raw = await meta.get(check_key(kid))
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        value = data["check"]
    except (ValueError, KeyError, TypeError):
        raise WrongKeyError(f"the check value of root key {kid!r} in the database is corrupt") from None
    return str(value)


async def _write_check(meta: MetaRepo, keyring: Keyring, kid: str) -> None:
    value = json.dumps({"key_id": kid, "check": keyring.check_value(kid)})
    if not await meta.add(check_key(kid), value):  # another replica wrote it first: it must agree
        stored = await _stored_check(meta, kid)
        if stored is None or not hmac.compare_digest(stored, keyring.check_value(kid)):
            raise WrongKeyError(_wrong_key(kid))


async def _a_value_opens(sealed: SealedRepo, keyring: Keyring, kid: str) -> bool:
    """Whether some value sealed with ``kid`` decrypts (a database from before check values)."""
    for value in await sealed.samples(kid, SAMPLES):
        try:
            keyring.decrypt(value.blob, table=value.table, column=value.column, row_id=value.row_id)
        except DecryptError:
            continue
        return True
    return False
