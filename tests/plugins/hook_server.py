"""A hook server speaking Arcade's hook contract on 127.0.0.1 (port 0): the `hook_server` fixture.

``server = await hook_server(answer)`` serves ``POST /{name}`` for any name: each request's JSON body
and headers are kept in ``server.received[name]`` and ``answer(name, body)`` (sync or async) gives the
JSON answered (a ``web.Response`` is sent as is). ``server.url(name)`` is the hook URL for engine.yaml.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

Answer = Callable[[str, dict[str, Any]], Any]


class HookServer:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.received: dict[str, list[dict[str, Any]]] = {}
        self.headers: dict[str, list[dict[str, str]]] = {}
        self.server: TestServer | None = None

    def url(self, name: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(f"/{name}"))

    def calls(self, name: str) -> int:
        return len(self.received.get(name, []))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        body = await request.json()
        self.received.setdefault(name, []).append(body)
        self.headers.setdefault(name, []).append(dict(request.headers))
        answer = self.answer(name, body)
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, web.StreamResponse):
            return answer
        return web.json_response(answer)


StartHookServer = Callable[[Answer], Awaitable[HookServer]]


@pytest.fixture
async def hook_server() -> AsyncIterator[StartHookServer]:
    started: list[TestServer] = []

    async def start(answer: Answer) -> HookServer:
        hooks = HookServer(answer)
        app = web.Application()
        app.router.add_post("/{name}", hooks.handle)
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        hooks.server = server
        started.append(server)
        return hooks

    yield start
    for server in started:
        await server.close()
