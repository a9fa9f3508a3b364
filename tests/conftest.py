"""Shared test setup: every module in tests/plugins/ is loaded as a pytest plugin."""

from __future__ import annotations

import pathlib

pytest_plugins = sorted(
    f"tests.plugins.{p.stem}"
    for p in (pathlib.Path(__file__).parent / "plugins").glob("*.py")
    if p.stem != "__init__"
)
