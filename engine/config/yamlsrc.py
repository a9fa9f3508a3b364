"""Read YAML keeping the line of every key, so config errors can name ``file:line``.

Mappings load as :class:`LineDict` and sequences as :class:`LineList`: plain ``dict``/``list``
subclasses with ``line`` (where the node starts) and ``lines`` (key or index -> line of its value).
Only YAML's safe subset is read; duplicate keys are errors, not silently overwritten.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from engine.errors import ConfigError


class LineDict(dict[Any, Any]):
    line: int | None = None
    lines: dict[Any, int]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lines = {}


class LineList(list[Any]):
    line: int | None = None
    lines: dict[Any, int]

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lines = {}


class _Loader(yaml.SafeLoader):
    source: str | None = None


def _construct_mapping(loader: _Loader, node: Node) -> LineDict:
    assert isinstance(node, MappingNode)
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool):
            raise ConfigError(
                "a mapping key must be a plain value", file=loader.source, line=key_node.start_mark.line + 1
            )
        if key in out:
            raise ConfigError(f"duplicate key {key!r}", file=loader.source, line=key_node.start_mark.line + 1)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: Node) -> LineList:
    assert isinstance(node, SequenceNode)
    out = LineList()
    out.line = node.start_mark.line + 1
    for i, item in enumerate(node.value):
        out.append(loader.construct_object(item, deep=True))
        out.lines[i] = item.start_mark.line + 1
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(text: str, source: str | None = None) -> Any:
    """Parse one YAML document; a syntax error becomes a :class:`ConfigError` with its line."""
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "not valid YAML"
        raise ConfigError(f"invalid YAML: {problem}", file=source, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", file=source) from None
    finally:
        loader.dispose()
