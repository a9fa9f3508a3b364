"""A real Keyturn engine on 127.0.0.1 (port 0) for tests: `keyturn_engine(yaml_text)` starts one.

The engine runs in the test's event loop via aiohttp's AppRunner with the full app (store,
flows, scheduler off unless asked). Its ``public_url`` is set to the bound port after start, so
flow links and callbacks point at it. API key: ``API_KEY`` (configured in ``security.api_keys``).
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from engine.api.app import create_app
from engine.net import ClientAddress
from engine.providers.load import load_text
from engine.wiring.options import WiringOptions
from engine.wiring.services import FLOWS, STORE
from engine.wiring.settings import SETTINGS, ReloadReport, Settings

API_KEY = "test-api-key-0123456789abcdef"


class KeyturnEngine:
    def __init__(self, app: web.Application, runner: web.AppRunner, port: int) -> None:
        self.app = app
        self.runner = runner
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_KEY}"})
        # no API key, cookies kept (also for 127.0.0.1): what a user's browser has
        self.browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    @property
    def store(self) -> Any:
        return self.app[STORE]

    @property
    def flows(self) -> Any:
        return self.app[FLOWS]

    async def api(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, **kw) as resp:
            body = await resp.json(content_type=None) if resp.content_length != 0 else None
            return resp.status, body

    async def reconfigure(self, body: str, *, env: dict[str, str] | None = None) -> ReloadReport:
        """Apply a new engine.yaml body (as SIGHUP would), keeping the bound port and public_url."""
        holder = self.app[SETTINGS]
        current = holder.current
        loaded = load_text(
            engine_yaml(body, current.base_dir),
            source="engine.yaml",
            base_dir=current.base_dir,
            env=env or {},
            listen=(None, self.port),  # checks that depend on public_url see the bound one
        )
        config = dataclasses.replace(loaded.config, api=current.config.api)
        return await holder.reload(
            dataclasses.replace(current, config=config, providers=dict(loaded.providers))
        )

    async def close(self) -> None:
        await self.session.close()
        await self.browser.close()
        await self.runner.cleanup()


def engine_yaml(body: str, tmp_path: Path) -> str:
    base = textwrap.dedent(
        f"""\
        api: {{development: true, port: 0}}
        storage: {{url: "sqlite+aiosqlite:///{tmp_path}/keyturn.db"}}
        """
    )
    body = textwrap.dedent(body)
    if "security:" not in body:
        body += f"\nsecurity: {{api_keys: ['{API_KEY}']}}\n"
    return base + body


StartEngine = Callable[..., Awaitable[KeyturnEngine]]


@pytest.fixture
async def keyturn_engine(tmp_path: Path) -> AsyncIterator[StartEngine]:
    started: list[KeyturnEngine] = []

    async def start(
        body: str = "", *, env: dict[str, str] | None = None, scheduler: bool = False, raw: str | None = None
    ) -> KeyturnEngine:
        text = raw if raw is not None else engine_yaml(body, tmp_path)
        loaded = load_text(text, source="engine.yaml", base_dir=tmp_path, env=env or {})
        settings = Settings(
            config=loaded.config,
            providers=dict(loaded.providers),
            source="engine.yaml",
            client_address=ClientAddress(()),
            base_dir=tmp_path,
        )
        app = create_app(settings, options=WiringOptions(scheduler=scheduler))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)  # no 60 s wait on a held request
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        api = dataclasses.replace(loaded.config.api, port=port, public_url=f"http://127.0.0.1:{port}")
        holder = app[SETTINGS]
        await holder.swap(dataclasses.replace(settings, config=dataclasses.replace(loaded.config, api=api)))
        engine = KeyturnEngine(app, runner, port)
        started.append(engine)
        return engine

    yield start
    for engine in started:
        await engine.close()
