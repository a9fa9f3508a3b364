"""engine.wiring.services: one context per resource; a startup failure closes exactly what was opened."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from engine.api.app import create_app
from engine.audit import FileSink
from engine.errors import ConfigError, StorageError
from engine.mcp.engine_backend import MCP
from engine.providers.load import load_text
from engine.wiring.options import WiringOptions
from engine.wiring.services import AUDITOR, IDLE_CONNECTION_S, LIFECYCLE, STORE, TOOLS, http_session_ctx
from engine.wiring.settings import HTTP_SESSION, Settings
from engine.wiring.webhooks import WEBHOOKS

ORDER = [
    "http_session", "store", "waiters", "listener", "auditor", "oauth", "flows", "revoker", "refresher",
    "lifecycle",
    "tools", "webhooks", "mcp",
]  # fmt: skip


class Boom(Exception):
    pass


def settings_for(tmp_path: Path, extra: str = "", storage: str | None = None) -> Settings:
    url = storage or f"sqlite+aiosqlite:///{tmp_path}/kt.db"
    text = f"api: {{development: true, port: 0}}\nstorage: {{url: '{url}'}}\n{extra}"
    loaded = load_text(text, source="engine.yaml", base_dir=tmp_path, env={})
    return Settings(config=loaded.config, providers=dict(loaded.providers), base_dir=tmp_path)


async def start_failing(app: web.Application) -> BaseException:
    runner = web.AppRunner(app)
    try:
        await runner.setup()
    except Exception as exc:
        await runner.cleanup()  # what Daemon.stop does after a failed start
        return exc
    await runner.cleanup()
    raise AssertionError("startup did not fail")


@pytest.mark.parametrize("failing", ORDER)
async def test_failure_at_each_resource_closes_the_ones_before(tmp_path: Path, failing: str) -> None:
    """A failure right after each resource opens closes it and every one opened before it."""
    audit = tmp_path / "audit.log"
    opened: dict[str, Any] = {}
    app: web.Application

    def on_open(name: str) -> None:
        opened[name] = {
            "http_session": lambda: app[HTTP_SESSION],
            "store": lambda: app[STORE],
            "auditor": lambda: app[AUDITOR],
            "lifecycle": lambda: app[LIFECYCLE],
            "tools": lambda: app[TOOLS],
            "webhooks": lambda: app[WEBHOOKS],
            "mcp": lambda: app[MCP],
        }.get(name, lambda: None)()
        if name == failing:
            raise Boom(name)

    settings = settings_for(tmp_path, f"audit: {{sinks: [file, database], file: '{audit}'}}\n")
    app = create_app(settings, options=WiringOptions(scheduler=True, on_open=on_open))
    exc = await start_failing(app)
    assert isinstance(exc, Boom) and str(exc) == failing
    assert list(opened) == ORDER[: ORDER.index(failing) + 1]  # nothing opened after the failure
    assert opened["http_session"].closed
    if "store" in opened:
        assert opened["store"].closed
    if "auditor" in opened:
        sinks = opened["auditor"].sinks
        assert all(s.closed for s in sinks if s.name == "database")
        assert all(s.closed for s in sinks if isinstance(s, FileSink))
    if "lifecycle" in opened:
        assert not opened["lifecycle"].scheduler.running
    if "tools" in opened:
        task = opened["tools"].registry._task
        assert task is None or task.done()
    if "webhooks" in opened:
        assert opened["webhooks"]._task is None and opened["webhooks"].session.closed
    if "mcp" in opened:
        assert not opened["mcp"].sessions


async def test_audit_file_in_a_missing_folder_closes_the_store(tmp_path: Path) -> None:
    """audit.file in a folder that does not exist fails the start naming audit.file; the store is closed."""
    stores: list[Any] = []
    app: web.Application

    def on_open(name: str) -> None:
        if name == "store":
            stores.append(app[STORE])

    settings = settings_for(tmp_path, f"audit: {{sinks: [file], file: '{tmp_path}/nope/audit.log'}}\n")
    app = create_app(settings, options=WiringOptions(on_open=on_open))
    exc = await start_failing(app)
    assert isinstance(exc, ConfigError) and exc.path == "audit.file"
    assert stores and stores[0].closed
    assert app[HTTP_SESSION].closed


async def test_bad_storage_url_closes_the_http_session(tmp_path: Path) -> None:
    """A database that cannot be opened fails the start with StorageError; the HTTP session is closed."""
    settings = settings_for(tmp_path, storage="postgresql+asyncpg://kt:kt@127.0.0.1:1/keyturn")
    app = create_app(settings)
    exc = await start_failing(app)
    assert isinstance(exc, StorageError)
    assert app[HTTP_SESSION].closed
    assert STORE not in app


async def test_an_idle_connection_is_not_reused_once_a_5s_keepalive_peer_may_close_it() -> None:
    """A connection idle past 4 s gets replaced (uvicorn closes at 5 s); a busy one is reused."""
    peers: list[object] = []

    async def seen(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({})

    server = web.Application()
    server.router.add_get("/", seen)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    app = web.Application()
    ctx = http_session_ctx(app)
    await ctx.__anext__()
    try:
        session = app[HTTP_SESSION]
        for pause in (0.0, 0.2, IDLE_CONNECTION_S + 0.5):
            await asyncio.sleep(pause)
            async with session.get(url) as resp:
                assert resp.status == 200
                await resp.read()
    finally:
        await app[HTTP_SESSION].close()
        await runner.cleanup()
    assert IDLE_CONNECTION_S < 5
    assert peers[0] == peers[1]  # kept alive while in use
    assert peers[2] != peers[1]  # a fresh connection after the idle pause
