"""engine/api/app.py: the outgoing HTTP session's connection reuse."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.api.app import IDLE_CONNECTION_S, http_session_ctx
from engine.api.state import HTTP_SESSION


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
