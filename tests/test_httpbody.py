"""engine.httpbody: whole bodies up to a cap, read from a real aiohttp server's answers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from engine.httpbody import BodyTooLarge, read_body, size_text

PIECE = b"0123456789abcdef" * 4096  # 64 KiB


async def _chunked(request: web.Request) -> web.StreamResponse:
    """``pieces`` times 64 KiB, sent chunked (no Content-Length), flushed piece by piece."""
    resp = web.StreamResponse()
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(int(request.query["pieces"])):
        await resp.write(PIECE)
    await resp.write_eof()
    return resp


async def _sized(request: web.Request) -> web.Response:
    return web.Response(body=PIECE * int(request.query["pieces"]))


@pytest.fixture
async def body_server(aiohttp_server: Any) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = web.Application()
    app.router.add_get("/chunked", _chunked)
    app.router.add_get("/sized", _sized)
    server = await aiohttp_server(app, host="127.0.0.1", port=0)
    async with aiohttp.ClientSession() as session:
        yield str(server.make_url("")), session


def test_size_text() -> None:
    """Limits read as MiB, KiB or bytes."""
    assert (size_text(8 * 1024 * 1024), size_text(65536), size_text(1000)) == (
        "8 MiB",
        "64 KiB",
        "1000 bytes",
    )


@pytest.mark.parametrize("path", ["/chunked", "/sized"])
async def test_reads_the_whole_body(body_server: tuple[str, aiohttp.ClientSession], path: str) -> None:
    """A 320 KiB body comes back whole, chunked or with Content-Length."""
    url, session = body_server
    async with session.get(f"{url}{path}?pieces=5") as resp:
        body = await read_body(resp.content, 1024 * 1024, length=resp.content_length)
    assert body == PIECE * 5


async def test_exact_limit_passes(body_server: tuple[str, aiohttp.ClientSession]) -> None:
    """A body of exactly the limit is read."""
    url, session = body_server
    async with session.get(f"{url}/chunked?pieces=2") as resp:
        assert len(await read_body(resp.content, 2 * len(PIECE))) == 2 * len(PIECE)


@pytest.mark.parametrize("path", ["/chunked", "/sized"])
async def test_past_the_cap_is_body_too_large(
    body_server: tuple[str, aiohttp.ClientSession], path: str
) -> None:
    """A body past the cap raises BodyTooLarge naming what and the limit, chunked or announced."""
    url, session = body_server
    async with session.get(f"{url}{path}?pieces=5") as resp:
        with pytest.raises(BodyTooLarge) as info:
            await read_body(resp.content, 256 * 1024, length=resp.content_length, what="the test answer")
    assert str(info.value) == "the test answer is larger than the limit of 256 KiB"
    assert info.value.limit == 256 * 1024


async def test_enough_stops_early(body_server: tuple[str, aiohttp.ClientSession]) -> None:
    """``enough`` ends the read once what was read suffices, before the cap is reached."""
    url, session = body_server
    async with session.get(f"{url}/chunked?pieces=50") as resp:
        body = await read_body(resp.content, 1024 * 1024, enough=lambda raw: len(raw) >= len(PIECE))
    assert len(PIECE) <= len(body) < 1024 * 1024
