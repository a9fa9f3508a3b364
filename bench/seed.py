"""Write an engine.yaml for a benchmark and fill its database with grants (sealed like real ones)."""

from __future__ import annotations

import base64
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from bench.pgseed import copy_grants
from engine.config.keyring import keyring_from_config
from engine.providers.load import load_config
from engine.store import models as m
from engine.store.store import Store, new_id

API_KEY = "bench-api-key-" + "0" * 24


def write_config(
    workdir: Path,
    *,
    port: int,
    storage: str,
    provider_url: str = "http://127.0.0.1:1",
    extra: str = "",
    processes: int = 1,
    event_loop: str = "auto",
) -> Path:
    key = base64.b64encode(os.urandom(32)).decode()
    loop = "" if event_loop == "auto" else f", event_loop: {event_loop}"  # auto: the default, unwritten
    cfg = workdir / "engine.yaml"
    cfg.write_text(f"""
api: {{host: 127.0.0.1, port: {port}, public_url: "http://127.0.0.1:{port}", processes: {processes}{loop}}}
storage: {{url: "{storage}"}}
security:
  root_keys: [{{id: k1, default: true, value: "{key}"}}]
  api_keys: ["{API_KEY}"]
auth:
  providers:
    - id: acme
      client_id: cid
      client_secret: csecret
      oauth2:
        authorization_request: {{endpoint: "{provider_url}/authorize"}}
        token_request: {{endpoint: "{provider_url}/token", auth_method: client_secret_post}}
audit: {{sinks: [file], file: "{workdir.resolve()}/audit.jsonl"}}
logging: {{level: {os.environ.get("KEYTURN_BENCH_LOG_LEVEL", "warning")}}}
{extra}
""")
    return cfg


async def seed(
    cfg: Path,
    count: int,
    *,
    due: bool = False,
    batch: int = 2000,
    next_refresh_at: datetime | None = None,
    keep_ids: int | None = None,
) -> list[str]:
    """Insert ``count`` active grants with sealed tokens; ``due`` makes them all due for refresh now.

    On PostgreSQL the rows are loaded with COPY (bench/pgseed.py); ``keep_ids`` is then passed on.
    """
    loaded = load_config(cfg)
    keyring = keyring_from_config(loaded.config, loaded.base_dir)
    url = loaded.config.storage.url or ""
    if url.startswith("postgresql"):
        return await copy_grants(
            url,
            keyring,
            count,
            due=due,
            next_refresh_at=next_refresh_at,
            keep_ids=keep_ids,
            rebuild_indexes=count >= 1_000_000,
            progress=count >= 1_000_000,
        )
    store = await Store.open(url, keyring)
    ids: list[str] = []
    now = datetime.now(UTC)
    try:
        for start in range(0, count, batch):
            rows = []
            for i in range(start, min(count, start + batch)):
                gid = new_id("gr")
                ids.append(gid)
                expires = now + (timedelta(seconds=30) if due else timedelta(hours=1))
                rows.append(
                    {
                        "id": gid,
                        "user_id": f"user{i:07d}@bench.test",
                        "provider_id": "acme",
                        "status": "active",
                        "scopes": ["read"],
                        "access_token": keyring.encrypt_str(
                            f"at-{secrets.token_hex(16)}", table="grants", column="access_token", row_id=gid
                        ),
                        "refresh_token": keyring.encrypt_str(
                            f"rt-{i}", table="grants", column="refresh_token", row_id=gid
                        ),
                        "token_type": "Bearer",
                        "expires_at": expires,
                        "token_metadata": {},
                        "created_at": now,
                        "updated_at": now,
                        "next_refresh_at": now - timedelta(seconds=1) if due else next_refresh_at,
                        "refresh_failures": 0,
                        "version": 1,
                    }
                )
            async with store.engine.begin() as conn:
                await conn.execute(sa.insert(m.grants), rows)
    finally:
        await store.close()
    return ids
