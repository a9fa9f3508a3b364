"""engine.config.governance: tools.hooks and tools.approval checks beyond the types."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import ConfigError
from engine.providers.load import load_text


def load(tools: str, extra: str = "") -> Any:
    return load_text("api: {development: true}\n" + extra + "tools:\n" + tools, source="engine.yaml").config


def hooks(*entries: str) -> str:
    return "  hooks:\n" + "".join(f"    - {e}\n" for e in entries)


def test_hook_defaults() -> None:
    """An access hook caches for 30s by default; failure is closed, timeout 5s, every tool governed."""
    hook = load(hooks("{id: a, kind: access, url: 'https://hooks.example/a', token: t}")).tools.hooks[0]
    assert (hook.cache, hook.failure, hook.timeout, hook.tools, hook.priority) == (30, "closed", 5, ("*",), 0)
    assert load(hooks("{id: p, kind: pre, url: 'https://hooks.example/p'}")).tools.hooks[0].cache is None


@pytest.mark.parametrize(
    ("entries", "path"),
    [
        (("{id: a, kind: pre, url: 'https://h.example/a'}", "{id: a, kind: post, url: 'https://h.example/b'}"),
         "tools.hooks[1].id"),
        (("{id: a, kind: pre, url: 'https://h.example/a', cache: 10s}",), "tools.hooks[0].cache"),
        (("{id: a, kind: pre, url: 'ftp://h.example/a'}",), "tools.hooks[0].url"),
        (("{id: a, kind: around, url: 'https://h.example/a'}",), "tools.hooks[0].kind"),
        (("{id: a, kind: pre, url: 'https://h.example/a', timeout: 2m}",), "tools.hooks[0].timeout"),
        (("{id: a, kind: pre, url: 'https://h.example/a', tools: []}",), "tools.hooks[0].tools"),
        (("{id: a, kind: pre, url: 'https://h.example/a', failure: shut}",), "tools.hooks[0].failure"),
    ],
)  # fmt: skip
def test_bad_hooks_are_named(entries: tuple[str, ...], path: str) -> None:
    """Each bad hook entry is an error naming its key path."""
    with pytest.raises(ConfigError) as info:
        load(hooks(*entries))
    assert info.value.path == path, info.value
