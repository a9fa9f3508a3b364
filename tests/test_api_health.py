"""engine.api.health: /ping, /ready and /v1/health on a real engine."""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from tests.plugins.keyturn_engine import API_KEY


async def test_ready_names_the_pid_only_with_an_api_key(keyturn_engine: Any) -> None:
    """/ready answers status and version to anyone; the process id only to a caller with a valid API key."""
    engine = await keyturn_engine()
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.get(engine.url + "/ready") as resp:
            assert resp.status == 200
            answer = await resp.json()
            assert answer == {"status": "ok", "version": answer["version"]}
        wrong = {"Authorization": "Bearer not-a-key-0123456789abcdef"}
        async with anonymous.get(engine.url + "/ready", headers=wrong) as resp:
            assert resp.status == 200 and "pid" not in await resp.json()
        key = {"Authorization": f"Bearer {API_KEY}"}
        async with anonymous.get(engine.url + "/ready", headers=key) as resp:
            assert resp.status == 200 and (await resp.json())["pid"] == os.getpid()
        async with anonymous.get(engine.url + "/v1/health") as resp:
            assert resp.status == 200 and await resp.json() == {"healthy": True}
