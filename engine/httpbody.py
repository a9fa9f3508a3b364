"""Whole HTTP bodies up to a cap, for aiohttp's client answers and server requests alike.

``StreamReader.read(n)`` returns what is buffered (often 32-64 KiB), not the body: a 300 KB worker
answer read that way is cut and no longer JSON. :func:`read_body` reads to the end of the body and
stops with :class:`BodyTooLarge` as soon as it passes the cap (or at once when ``Content-Length``
already says so). The caps in use are listed in docs/configuration.md ("Limits").
"""

from __future__ import annotations

from collections.abc import Callable

import aiohttp


class BodyTooLarge(ValueError):
    """A body passed its cap; the message names what was read and the limit, never the content."""

    def __init__(self, what: str, limit: int) -> None:
        super().__init__(f"{what} is larger than the limit of {size_text(limit)}")
        self.what = what
        self.limit = limit


def size_text(limit: int) -> str:
    """``8 MiB``, ``64 KiB`` or ``1000 bytes``: a limit as people read it."""
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit} bytes"


async def read_body(
    stream: aiohttp.StreamReader,
    limit: int,
    *,
    length: int | None = None,
    what: str = "the body",
    enough: Callable[[bytes], bool] | None = None,
) -> bytes:
    """The whole body of ``stream`` (at most ``limit`` bytes); ``length`` is its ``Content-Length`` if sent.

    ``enough(read_so_far)`` may end the read early, for a stream (SSE) that stays open after its answer.
    """
    if length is not None and length > limit:
        raise BodyTooLarge(what, limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(what, limit)
        chunks.append(chunk)
        if enough is not None and enough(b"".join(chunks)):
            break
    return b"".join(chunks)
