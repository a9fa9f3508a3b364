"""Shared test setup: every module in tests/plugins/ is loaded as a pytest plugin."""

from __future__ import annotations

import pathlib

# token_scan first: other plugins import it to register the tokens they issue
_others = sorted(
    f"tests.plugins.{p.stem}"
    for p in (pathlib.Path(__file__).parent / "plugins").glob("*.py")
    if p.stem not in ("__init__", "token_scan")
)
pytest_plugins = ["pytester", "tests.plugins.token_scan", *_others]
