"""engine.net: client address resolution trusts X-Forwarded-* only from configured proxies (SECURITY 30)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from engine.net import ClientAddress


def _app(ca: ClientAddress) -> web.Application:
    async def who(request: web.Request) -> web.Response:
        return web.json_response({"ip": ca.of(request), "scheme": ca.scheme(request)})

    app = web.Application()
    app.router.add_get("/", who)
    return app


async def test_forwarded_header_ignored_without_trusted_proxies(aiohttp_client: Any) -> None:
    """With no trusted proxies, X-Forwarded-For and -Proto are ignored."""
    client = await aiohttp_client(_app(ClientAddress(())))
    resp = await client.get("/", headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    assert await resp.json() == {"ip": "127.0.0.1", "scheme": "http"}


async def test_forwarded_header_from_untrusted_peer_ignored(aiohttp_client: Any) -> None:
    """A peer outside the trusted ranges cannot set its address with X-Forwarded-For."""
    client = await aiohttp_client(_app(ClientAddress(["10.0.0.0/8"])))
    resp = await client.get("/", headers={"X-Forwarded-For": "1.2.3.4"})
    assert (await resp.json())["ip"] == "127.0.0.1"


async def test_forwarded_header_from_trusted_proxy_used(aiohttp_client: Any) -> None:
    """Behind a trusted proxy, the nearest untrusted hop is the client and the scheme is believed."""
    client = await aiohttp_client(_app(ClientAddress(["127.0.0.0/8", "10.0.0.0/8"])))
    resp = await client.get(
        "/", headers={"X-Forwarded-For": "198.51.100.7, 10.1.2.3", "X-Forwarded-Proto": "https"}
    )
    assert await resp.json() == {"ip": "198.51.100.7", "scheme": "https"}
