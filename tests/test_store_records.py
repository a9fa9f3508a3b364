"""engine.store.records: reprs never show a token, verifier or nonce."""

from __future__ import annotations

from engine.store.store import Store
from tests.plugins.store import STORE_REFRESH, STORE_TOKEN, store_flow, store_grant


async def test_grant_repr_hides_tokens(store_opened: Store) -> None:
    """repr() and str() of a grant name it without its tokens or user info."""
    g = await store_grant(store_opened, id_token="idtok-secret", user_info={"email": "ann@x.example"})
    for text in (repr(g), str(g)):
        assert g.id in text
        for secret in (STORE_TOKEN, STORE_REFRESH, "idtok-secret", "ann@x.example"):
            assert secret not in text


async def test_flow_repr_hides_verifier(store_opened: Store) -> None:
    """repr() of a flow names it without its PKCE verifier or nonce."""
    f = await store_flow(store_opened, code_verifier="verifier-" + "x" * 40, nonce="nonce-secret")
    assert f.id in repr(f) and "verifier-" not in repr(f) and "nonce-secret" not in repr(f)
