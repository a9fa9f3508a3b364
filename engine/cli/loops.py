"""``api.event_loop``: run ``keyturn serve`` (each of ``api.processes``) on uvloop or asyncio's own loop.

``auto`` (the default) takes uvloop when it can be imported (a dependency except on Windows) and
asyncio's loop otherwise; ``uvloop`` insists on it (the config loader refuses it when it is missing);
``asyncio`` keeps the standard library's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from engine.errors import ConfigError

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str) -> LoopFactory | None:
    """The event loop factory for ``choice`` (None: asyncio's default loop)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise ConfigError("uvloop is not installed: use auto or asyncio", path="api.event_loop") from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(main)
