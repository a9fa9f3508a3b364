"""Turn loaded YAML data into frozen dataclasses, with errors that name the key path and line.

Each config section and the provider template schema are plain frozen dataclasses. A field may
carry metadata:

- ``aliases``: other spellings accepted for the key (Arcade's ``authorize_request``, ...);
- ``secret``: the value is masked by ``keyturn check-config``;
- ``kind``: the kind of secret the key holds (``root_key``, ``api_key``, ``client_secret`` ...): a "did
  you mean" for an unknown key never names a key of another kind (see :func:`secret_kind`);
- ``doc``: a one-line description.

Values come as produced by :mod:`engine.config.yamlsrc` (dicts and lists that remember the line
of each key) or as plain Python data (tests, templates built in code). Scalars that are strings go
through ``substitute`` (``${env:VAR}`` and friends) when a substitution function is passed.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from engine.errors import ConfigError

T = TypeVar("T")

Substitute = Callable[[str, str], str]  # (value, key path) -> substituted value


class Duration(float):
    """Seconds, written in YAML as ``30s``, ``5m``, ``1h``, ``250ms``, ``2d`` or a bare number of seconds;
    also Go's compound form that Arcade's engine.yaml uses (``1m30s``, ``1h15m``, ``500us``)."""

    _UNITS: typing.ClassVar[dict[str, float]] = {
        "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400,
    }  # fmt: skip
    _RE: typing.ClassVar[re.Pattern[str]] = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
    _PART: typing.ClassVar[str] = r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)"
    _COMPOUND: typing.ClassVar[re.Pattern[str]] = re.compile(rf"^\s*(?:{_PART})+\s*$")

    @classmethod
    def parse(cls, value: object) -> Duration:
        if isinstance(value, bool):
            raise ValueError("expected a duration like 30s, 5m or 1h")
        if isinstance(value, int | float):
            if value < 0:
                raise ValueError("a duration cannot be negative")
            return cls(value)
        if isinstance(value, str):
            m = cls._RE.match(value)
            if m:
                return cls(float(m.group(1)) * cls._UNITS[m.group(2) or "s"])
            if cls._COMPOUND.match(value):
                return cls(sum(float(n) * cls._UNITS[unit] for n, unit in re.findall(cls._PART, value)))
        raise ValueError(f"expected a duration like 30s, 5m or 1h, got {value!r}")


def field_line(data: object, key: str | int) -> int | None:
    """The 1-based line where ``key`` of ``data`` was written, when the loader recorded it."""
    lines = getattr(data, "lines", None)
    if isinstance(lines, dict):
        value = lines.get(key)
        return value if isinstance(value, int) else None
    return None


def node_line(data: object) -> int | None:
    value = getattr(data, "line", None)
    return value if isinstance(value, int) else None


@dataclasses.dataclass
class Context:
    source: str | None = None
    substitute: Substitute | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    # key paths accepted and ignored with a warning (Arcade keys Keyturn does not serve);
    # "section.*" ignores every unknown key of that section
    ignored_keys: frozenset[str] = frozenset()
    # where relative file paths in the config (client_secret_path, ...) are read from: engine.yaml's folder
    base_dir: Path | None = None

    def error(self, msg: str, path: str, line: int | None) -> ConfigError:
        return ConfigError(msg, path=path, file=self.source, line=line)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if tp is str:
        return "a string"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is Duration:
        return "a duration (30s, 5m, 1h)"
    if origin is list or origin is tuple:
        return "a list"
    if origin is dict or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return "a mapping"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    return str(tp)


def _convert(tp: Any, value: Any, path: str, line: int | None, ctx: Context) -> Any:
    origin = get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _convert(args[0], value, path, line, ctx)
        last: ConfigError | None = None
        for arg in args:
            try:
                return _convert(arg, value, path, line, ctx)
            except ConfigError as exc:
                last = exc
        assert last is not None
        raise last
    if isinstance(value, str) and ctx.substitute is not None:
        try:
            value = ctx.substitute(value, path)
        except ConfigError as exc:
            raise ctx.error(exc.msg, exc.path or path, exc.line or line) from None
    if tp is Any:
        return value
    if tp is str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ctx.error(f"expected a string, got {_describe(value)}", path, line)
        return str(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.strip().lower() in ("true", "yes", "on")
        raise ctx.error(f"expected true or false, got {_describe(value)}", path, line)
    if tp is int:
        if isinstance(value, bool):
            raise ctx.error(f"expected a whole number, got {_describe(value)}", path, line)
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
            return int(value)
        raise ctx.error(f"expected a whole number, got {_describe(value)}", path, line)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        try:
            if isinstance(value, str):
                return float(value)
        except ValueError:
            pass
        raise ctx.error(f"expected a number, got {_describe(value)}", path, line)
    if tp is Duration:
        try:
            return Duration.parse(value)
        except ValueError as exc:
            raise ctx.error(str(exc), path, line) from None
    if origin is Literal:
        allowed = get_args(tp)
        if value in allowed:
            return value
        hint = _suggest(str(value), [str(a) for a in allowed])
        raise ctx.error(
            f"must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}{hint}", path, line
        )
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        if isinstance(value, str) and item_tp is str:
            # a space or comma separated string where a list of words is expected
            return tuple(v for v in re.split(r"[\s,]+", value) if v)
        if not isinstance(value, list | tuple):
            raise ctx.error(f"expected a list, got {_describe(value)}", path, line)
        return tuple(
            _convert(item_tp, item, _join(path, i), field_line(value, i) or line, ctx)
            for i, item in enumerate(value)
        )
    if origin in (dict, Mapping) or tp is dict:
        map_args = get_args(tp)
        val_tp = map_args[1] if map_args else Any
        if not isinstance(value, Mapping):
            raise ctx.error(f"expected a mapping, got {_describe(value)}", path, line)
        if val_tp is Any:
            return value  # kept raw (with its line table) for a later, schema-aware step
        return types.MappingProxyType(
            {
                str(k): _convert(val_tp, v, _join(path, str(k)), field_line(value, k) or line, ctx)
                for k, v in value.items()
            }
        )
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ctx.error(f"expected a mapping, got {_describe(value)}", path, line)
        return _convert_dataclass(tp, value, path, line, ctx)
    raise TypeError(f"unsupported config type {tp!r} at {path}")


def _describe(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, int | float):
        return f"the number {value}"
    return f"{value!r}"


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# The kind of secret a key's name says it holds, first match wins. A hint that turned an encryption
# key into an API key would make it a bearer credential: a hint never crosses kinds.
_SECRET_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("root_key", re.compile(r"encrypt|root|master|kek|data_?key|cipher|aes|seal")),
    ("metrics_token", re.compile(r"bearer_?tok")),
    ("api_key", re.compile(r"api_?key|bearer")),
    ("client_secret", re.compile(r"client_?secret")),
    ("password", re.compile(r"passw|pwd")),
    ("secret", re.compile(r"secret")),
)


def secret_kind(name: str) -> str | None:
    """The kind of secret a key named ``name`` holds, judged from the name (``None``: not a secret)."""
    lower = name.lower().replace("-", "_")
    for kind, pattern in _SECRET_KINDS:
        if pattern.search(lower):
            return kind
    return None


def _suggest_key(word: str, fields: Mapping[str, dataclasses.Field[Any]]) -> str:
    """A "did you mean" among ``fields`` (key -> field) that holds the same kind of secret as ``word``.

    A name that says nothing of its kind ("keys") is matched to a secret key only when it is a plain
    misspelling of it ("client_secrt").
    """
    kind = secret_kind(word)
    choices: list[str] = []
    for key, f in fields.items():
        other = f.metadata.get("kind", secret_kind(key))
        if key.startswith("_") or (other != kind and kind is not None):
            continue
        if other != kind and difflib.SequenceMatcher(None, word, key).ratio() < 0.8:
            continue
        choices.append(key)
    return _suggest(word, sorted(choices))


def _convert_dataclass(
    tp: type[Any], data: Mapping[Any, Any], path: str, line: int | None, ctx: Context
) -> Any:
    hints = get_type_hints(tp)
    by_key: dict[str, dataclasses.Field[Any]] = {}
    for f in dataclasses.fields(tp):
        by_key[f.name] = f
        for alias in f.metadata.get("aliases", ()):
            by_key[alias] = f
    kwargs: dict[str, Any] = {}
    seen_from: dict[str, str] = {}
    for raw_key, raw_value in data.items():
        key = str(raw_key)
        key_path = _join(path, key)
        key_line = field_line(data, raw_key) or line
        found = by_key.get(key)
        if found is None:
            if key_path in ctx.ignored_keys or f"{path}.*" in ctx.ignored_keys:
                ctx.warnings.append(f"{key_path}: not served by Keyturn; ignored")
                continue
            raise ctx.error(f"unknown key{_suggest_key(key, by_key)}", key_path, key_line)
        f = found
        if f.name in seen_from:
            raise ctx.error(f"given twice (also as {seen_from[f.name]!r})", key_path, key_line)
        seen_from[f.name] = key
        if raw_value is None and not _optional(hints[f.name]):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue  # an empty key means "use the default"
            raise ctx.error(f"expected {_type_name(hints[f.name])}, got nothing", key_path, key_line)
        kwargs[f.name] = _convert(hints[f.name], raw_value, key_path, key_line, ctx)
    for f in dataclasses.fields(tp):
        if (
            f.name not in kwargs
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ctx.error("is required", _join(path, f.name), line)
    try:
        obj = tp(**kwargs)
    except (ValueError, ConfigError) as exc:
        if isinstance(exc, ConfigError):
            raise ctx.error(exc.msg, _join(path, exc.path) if exc.path else path, exc.line or line) from None
        raise ctx.error(str(exc), path, line) from None
    return obj


def _optional(tp: Any) -> bool:
    origin = get_origin(tp)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in get_args(tp)


def from_data(tp: type[T], data: Any, *, path: str = "", ctx: Context | None = None) -> T:
    """Build ``tp`` (a dataclass) from ``data``; raises :class:`ConfigError` naming path and line."""
    ctx = ctx or Context()
    result: T = _convert(tp, data, path, node_line(data), ctx)
    return result


def to_data(obj: Any, *, mask_secrets: bool = False) -> Any:
    """Plain data for a config object (used by ``check-config``), with secrets masked on request."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if mask_secrets and f.metadata.get("secret") and value:
                out[f.name] = "********"
            else:
                out[f.name] = to_data(value, mask_secrets=mask_secrets)
        return out
    if isinstance(obj, Mapping):
        return {k: to_data(v, mask_secrets=mask_secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_data(v, mask_secrets=mask_secrets) for v in obj]
    return obj


def secret(default: Any = None, *, factory: Any = dataclasses.MISSING, **meta: Any) -> Any:
    """A field whose value ``check-config`` masks."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"secret": True, **meta})
    return dataclasses.field(default=default, metadata={"secret": True, **meta})


def alias(*names: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING) -> Any:
    """A field also accepted under other spellings."""
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata={"aliases": names})
    return dataclasses.field(default=default, metadata={"aliases": names})
