"""engine.store.keycheck on SQLite and PostgreSQL: a wrong or missing root key is refused at open, by id."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.config.keyring import keyring_from_config
from engine.crypto.cipher import Keyring, UnknownKeyError, WrongKeyError
from engine.crypto.keys import DEV_KEY_FILE
from engine.providers.load import load_text
from engine.store.keycheck import CHECK_PREFIX, check_key
from engine.store.rotate import rotate
from engine.store.store import Store
from tests.plugins.store import store_flow, store_grant


async def _checks(store: Store) -> dict[str, str]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT key, value FROM meta WHERE key LIKE 'key_check:%'"))
        return {r[0]: r[1] for r in rows}


async def test_different_key_under_the_same_id_is_refused(store_url: str) -> None:
    """Another key under a known id is refused at open, naming the id and never either key's value."""
    right = os.urandom(32)
    store = await Store.open(store_url, Keyring({"k1": right}, "k1"))
    await store_grant(store)
    await store.close()
    wrong = os.urandom(32)
    with pytest.raises(WrongKeyError, match="root key 'k1' is not the key") as info:
        await Store.open(store_url, Keyring({"k1": wrong}, "k1"))
    for key in (right, wrong):
        assert base64.b64encode(key).decode() not in str(info.value) and key.hex() not in str(info.value)
    reopened = await Store.open(store_url, Keyring({"k1": right}, "k1"))  # the right key still opens
    await reopened.close()


async def test_wrong_key_refused_even_before_any_value_is_stored(store_url: str) -> None:
    """The default key's check value is written at the first open, so a swapped key is caught with no rows."""
    store = await Store.open(store_url, Keyring({"k1": os.urandom(32)}, "k1"))
    assert check_key("k1") in await _checks(store)
    await store.close()
    with pytest.raises(WrongKeyError, match="'k1'"):
        await Store.open(store_url, Keyring({"k1": os.urandom(32)}, "k1"))


async def test_database_without_check_values_gets_them_when_rows_decrypt(store_url: str) -> None:
    """A database from before check values: the right key opens and writes them, a wrong key is refused."""
    right = os.urandom(32)
    store = await Store.open(store_url, Keyring({"k1": right}, "k1"))
    await store_grant(store)
    await store_flow(store)
    await store.meta.delete_prefix(CHECK_PREFIX)
    await store.close()
    with pytest.raises(WrongKeyError, match="'k1'"):
        await Store.open(store_url, Keyring({"k1": os.urandom(32)}, "k1"))
    store = await Store.open(store_url, Keyring({"k1": right}, "k1"))
    try:
        assert list(await _checks(store)) == [check_key("k1")]
    finally:
        await store.close()


async def test_key_id_used_only_after_row_200_is_seen(store_url: str) -> None:
    """A key id used only by the 201st row is found: opening without that key names it."""
    k1 = os.urandom(32)
    store = await Store.open(store_url, Keyring({"k1": k1}, "k1"))
    for i in range(200):
        await store_grant(store, f"user-{i:03}")
    await store.close()
    store = await Store.open(store_url, Keyring({"k1": k1, "old": os.urandom(32)}, "old"))
    await store_grant(store, "user-200")
    assert {k: n for k, (n, _) in (await store.sealed.key_ids()).items()} == {"k1": 600, "old": 3}
    await store.close()
    with pytest.raises(UnknownKeyError, match="'old'"):
        await Store.open(store_url, Keyring({"k1": k1}, "k1"))


async def test_rotation_keeps_check_values_right(store_url: str) -> None:
    """After keys rotate, the new key is checked and the old id, no longer used, may hold another key."""
    k1, k2 = os.urandom(32), os.urandom(32)
    store = await Store.open(store_url, Keyring({"k1": k1}, "k1"))
    await store_grant(store)
    await store.close()
    store = await Store.open(store_url, Keyring({"k2": k2, "k1": k1}, "k2"))
    assert await rotate(store) > 0
    assert set(await _checks(store)) == {check_key("k2")}
    await store.close()
    store = await Store.open(store_url, Keyring({"k2": k2, "k1": os.urandom(32)}, "k2"))
    assert (await store.grants.find("u1", "p")).status == "active"
    await store.close()
    with pytest.raises(WrongKeyError, match="'k2'"):
        await Store.open(store_url, Keyring({"k2": os.urandom(32)}, "k2"))


async def test_deleted_development_key_file_is_refused(tmp_path: Path) -> None:
    """Deleting the development key file (a new one is generated) makes the next start fail, naming it."""
    config = load_text(
        f"api: {{development: true}}\nstorage: {{url: 'sqlite+aiosqlite:///{tmp_path}/kt.db'}}\n",
        source="engine.yaml",
        base_dir=tmp_path,
        env={},
    ).config
    store = await Store.open(config.storage.url or "", keyring_from_config(config, tmp_path))
    await store_grant(store)
    await store.close()
    (tmp_path / DEV_KEY_FILE).unlink()
    with pytest.raises(WrongKeyError, match=r"root key 'dev' .*development key file"):
        await Store.open(config.storage.url or "", keyring_from_config(config, tmp_path))
