"""engine.cli.loops: ``api.event_loop`` picks the loop ``keyturn serve`` runs on."""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest

from engine.cli import loops
from engine.errors import ConfigError


async def _kind() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_and_uvloop_run_on_uvloop_asyncio_on_its_own() -> None:
    """auto and uvloop run the coroutine on uvloop (installed as a dependency); asyncio on asyncio's loop."""
    assert loops.run(_kind(), "auto").startswith("uvloop")
    assert loops.run(_kind(), "uvloop").startswith("uvloop")
    assert loops.run(_kind(), "asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """With uvloop not importable, auto means asyncio's loop and uvloop raises ConfigError at the key."""
    real_import = builtins.__import__

    def no_uvloop(name: str, *args: Any, **kw: Any) -> Any:
        if name == "uvloop":
            raise ImportError(name)
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_uvloop)
    assert loops.loop_factory("auto") is None
    assert loops.run(_kind(), "auto").startswith("asyncio")
    with pytest.raises(ConfigError) as info:
        loops.loop_factory("uvloop")
    assert info.value.path == "api.event_loop"
