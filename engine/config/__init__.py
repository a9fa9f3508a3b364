"""engine.yaml: loading (:func:`load_config`), the typed model (:mod:`engine.config.model`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.config.loader import LoadedConfig


def load_config(path: Any = None, **kwargs: Any) -> LoadedConfig:
    from engine.config.loader import load_config as _load

    return _load(path, **kwargs)


__all__ = ["load_config"]
