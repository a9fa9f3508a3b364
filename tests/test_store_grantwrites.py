"""engine.store.grantwrites: many refreshes' writes in one transaction, a lost race lost only by its grant."""

from __future__ import annotations

import dataclasses

from engine.store.store import Store
from tests.plugins.store import store_grant
from tests.test_grants_batch import update


async def test_a_changed_grant_loses_only_its_own_write(store_opened: Store) -> None:
    """A grant written or revoked since it was read gets None; the others in the batch are written."""
    a, b, c = [await store_grant(store_opened, u) for u in ("a", "b", "c")]
    await store_opened.grants.set_status(b.id, "revoked")
    await store_opened.grants.update_tokens_many([update(c.id, c.version, "at-other")])
    results = await store_opened.grants.update_tokens_many(
        [update(a.id, a.version, "at-a"), update(b.id, b.version, "at-b"), update(c.id, c.version, "at-c")]
    )
    assert results[0] is not None and results[0].access_token == "at-a"
    assert results[1] is None and results[2] is None
    kept = await store_opened.grants.get(c.id)
    assert kept is not None and kept.access_token == "at-other"
    revoked = await store_opened.grants.get(b.id)
    assert revoked is not None and revoked.status == "revoked" and revoked.access_token != "at-b"


async def test_values_not_given_keep_the_stored_ones(store_opened: Store) -> None:
    """In one batch, a refresh, id token or scopes given replace the stored ones; the others are kept."""
    a, b = [await store_grant(store_opened, u, scopes=["read"]) for u in ("a", "b")]
    given = dataclasses.replace(
        update(a.id, a.version, "at-a", refresh="rt-new"), scopes=["read", "write"], id_token="idt-a"
    )
    results = await store_opened.grants.update_tokens_many([given, update(b.id, b.version, "at-b")])
    assert [r is not None for r in results] == [True, True]
    new_a, new_b = await store_opened.grants.get(a.id), await store_opened.grants.get(b.id)
    assert new_a is not None and new_b is not None
    assert (new_a.refresh_token, new_a.scopes, new_a.id_token) == ("rt-new", ("read", "write"), "idt-a")
    assert (new_b.refresh_token, new_b.scopes, new_b.id_token) == (b.refresh_token, ("read",), b.id_token)
    assert (new_a.version, new_b.version) == (a.version + 1, b.version + 1)
    assert new_b.access_token == "at-b" and new_b.refreshed_at is not None
