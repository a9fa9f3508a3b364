"""Two engines on one PostgreSQL database: no grant refreshed twice; long-poll completion across replicas."""

from __future__ import annotations

import asyncio
import base64
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.store import models as m
from engine.store.store import new_id
from engine.wiring.services import REFRESHER
from tests.plugins.mini_provider import MiniProvider, acme_config

KEY = base64.b64encode(os.urandom(32)).decode()


def pg_config(p: MiniProvider, url: str) -> str:
    body = acme_config(
        p,
        security=f"api_keys: ['test-api-key-0123456789abcdef'], "
        f"root_keys: [{{id: k1, default: true, value: '{KEY}'}}]",
    )
    lifecycle = "lifecycle: {refresh_jitter: 0s, refresh_concurrency: 32}\n"
    return f"api: {{development: true, port: 0}}\nstorage: {{url: '{url}'}}\n{lifecycle}{body}"


async def test_two_replicas_refresh_each_grant_once(
    keyturn_engine: Any, mini_provider: MiniProvider, pg_url: str
) -> None:
    """500 due grants, two engines refreshing at once: exactly 500 refresh calls reach the provider."""
    a = await keyturn_engine(raw=pg_config(mini_provider, pg_url))
    b = await keyturn_engine(raw=pg_config(mini_provider, pg_url))
    keyring = a.store.keyring
    now = datetime.now(UTC)
    rows = []
    for i in range(500):
        gid = new_id("gr")
        refresh = f"rt-{i}-{gid}"
        mini_provider.valid_refresh.add(refresh)
        rows.append({
            "id": gid, "user_id": f"u{i}", "provider_id": "acme", "status": "active", "scopes": ["read"],
            "access_token": keyring.encrypt_str(f"at-{i}", table="grants", column="access_token", row_id=gid),
            "refresh_token": keyring.encrypt_str(refresh, table="grants", column="refresh_token", row_id=gid),
            "token_type": "Bearer", "expires_at": now + timedelta(seconds=30), "token_metadata": {},
            "created_at": now, "updated_at": now, "next_refresh_at": now - timedelta(seconds=1),
            "refresh_failures": 0, "version": 1,
        })  # fmt: skip
    async with a.store.engine.begin() as conn:
        await conn.execute(sa.insert(m.grants), rows)
    mini_provider.refresh_delay = 0.01
    results = await asyncio.gather(
        a.app[REFRESHER].refresh_due(),
        b.app[REFRESHER].refresh_due(),
        a.app[REFRESHER].refresh_due(),
        b.app[REFRESHER].refresh_due(),
    )
    assert len(mini_provider.refresh_calls) == 500
    assert len(set(mini_provider.refresh_calls)) == 500
    # concurrent passes in one engine share one refresh per grant, so "refreshed" may count a grant twice
    assert sum(r.get("refreshed", 0) for r in results) >= 500
    assert await a.store.grants.due(datetime.now(UTC)) == []


async def test_long_poll_across_replicas(
    keyturn_engine: Any, mini_provider: MiniProvider, pg_url: str
) -> None:
    """A status wait on one replica returns when the callback lands on the other (LISTEN/NOTIFY)."""
    a = await keyturn_engine(raw=pg_config(mini_provider, pg_url))
    b = await keyturn_engine(raw=pg_config(mini_provider, pg_url))
    body = {"user_id": "u", "auth_requirement": {"id": "acme", "oauth2": {"scopes": ["read"]}}}
    _, auth = await a.api("POST", "/v1/auth/authorize", json=body)
    waiting = asyncio.create_task(a.api("GET", f"/v1/auth/status?id={auth['id']}&wait=30"))
    await asyncio.sleep(0.3)
    link = auth["url"].replace(a.url, b.url)  # the user's browser reaches the other replica
    async with b.browser.get(link) as resp:
        assert resp.status == 200
    started = asyncio.get_running_loop().time()
    _, done = await asyncio.wait_for(waiting, 10)
    assert done["status"] == "completed"
    assert asyncio.get_running_loop().time() - started < 5
