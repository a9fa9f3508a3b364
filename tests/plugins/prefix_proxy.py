"""A reverse proxy on 127.0.0.1 (port 0) that serves an engine under a path prefix: `prefix_proxy` fixture.

``await prefix_proxy(engine_url, "/keyturn")`` answers ``/keyturn/X`` with the engine's ``/X`` (method,
query, headers, cookies and body passed on; redirects and ``Set-Cookie`` passed back untouched), and 404
for anything outside the prefix: what a proxy in front of ``api.public_url: https://host/keyturn`` does.
``passthrough=("/.well-known/",)`` also forwards paths under those roots unchanged (a proxy that routes the
root ``/.well-known/`` to the engine, for RFC 8414/9728 path-inserted metadata URLs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

_HOP = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


class PrefixProxy:
    def __init__(self, target: str, prefix: str, passthrough: tuple[str, ...] = ()) -> None:
        self.target = target.rstrip("/")
        self.prefix = prefix
        self.passthrough = passthrough
        self.outside: list[str] = []  # paths asked for outside the prefix (a broken link or form)
        self.passed: list[str] = []  # paths forwarded unchanged (passthrough)
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.server = TestServer(app, host="127.0.0.1", port=0)

    @property
    def url(self) -> str:
        """The public URL: the proxy's origin and the prefix."""
        return str(self.server.make_url(self.prefix))

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        if path.startswith(self.passthrough) and self.passthrough:
            self.passed.append(path)
            url = self.target + path
        elif not path.startswith(self.prefix + "/"):
            self.outside.append(path)
            return web.Response(status=404, text="outside the prefix")
        else:
            url = self.target + path[len(self.prefix) :]
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self.session.request(
            request.method, url, headers=headers, data=await request.read(), allow_redirects=False
        ) as answer:
            body = await answer.read()
            response = web.Response(status=answer.status, body=body)
            for key, value in answer.headers.items():
                if key.lower() not in _HOP:
                    response.headers.add(key, value)
            return response


StartProxy = Callable[..., Awaitable[PrefixProxy]]


@pytest.fixture
async def prefix_proxy() -> AsyncIterator[StartProxy]:
    started: list[PrefixProxy] = []

    async def start(target: str, prefix: str, passthrough: tuple[str, ...] = ()) -> PrefixProxy:
        proxy = PrefixProxy(target, prefix, passthrough)
        await proxy.server.start_server()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.session.close()
        await proxy.server.close()
