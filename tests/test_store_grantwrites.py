"""engine.store.grantwrites: many refreshes' writes in one transaction, a lost race lost only by its grant."""

from __future__ import annotations

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
