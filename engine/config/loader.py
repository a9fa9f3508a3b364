"""Read ``engine.yaml``: parse with lines, substitute, convert, check across sections.

Providers are resolved one layer up, by :mod:`engine.providers.load` (``load_config``), which merges
each ``auth.providers[]`` entry over its template: config knows nothing of providers.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from engine.config import compat
from engine.config.convert import Context, field_line, from_data
from engine.config.mcp import check_mcp
from engine.config.model import Config, PostgresStorage
from engine.config.substitute import Substituter
from engine.config.webhooks import check_webhooks
from engine.config.yamlsrc import LineDict, load_yaml
from engine.crypto.cipher import decode_key
from engine.errors import ConfigError
from engine.net import is_loopback_host

# Arcade engine.yaml keys Keyturn accepts and ignores (with a warning); "x.*": any other key of x
IGNORED_SECTIONS = frozenset(
    {"llm", "routing", "models", "cache", "execution_logging", "telemetry.*", "api.rate_limit"}
)
# Arcade's api deadlines Keyturn's HTTP server (aiohttp) cannot apply: accepted, with this warning each
UNAPPLIED_API_KEYS = {
    "read_timeout": "Keyturn's HTTP server has no deadline for reading a request; request bodies are capped "
    "by api.max_body_bytes (Arcade: max_request_body_size) and idle connections close after api.idle_timeout",
    "write_timeout": "Keyturn's HTTP server has no deadline for writing a response; a held "
    "/v1/auth/status answers within its wait (at most 59 s)",
}
DEFAULT_SQLITE = "keyturn.db"


@dataclasses.dataclass(frozen=True)
class ParsedConfig:
    """A checked :class:`Config` with what later checks need: the document as written and the context."""

    config: Config
    data: Any  # the YAML as read (LineDicts: lines for errors)
    ctx: Context  # source, line lookups, warnings so far
    source: str  # the file read, or "<defaults>"
    base_dir: Path


def uvloop_available() -> bool:
    """Whether ``uvloop`` can be imported (``api.event_loop``)."""
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def section(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _line(data: Any, *keys: str) -> int | None:
    parent = section(data, *keys[:-1])
    return field_line(parent, keys[-1]) if parent is not None else None


def read_config_file(path: str | os.PathLike[str] | None) -> tuple[str, str, Path]:
    """``(text, source, base_dir)`` of a config file (``None``: the embedded development defaults)."""
    if path is None:
        text, source, base_dir = "api: {development: true}\n", "<defaults>", Path.cwd()
    else:
        file_path = Path(path)
        source = str(path)
        try:
            text = file_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("file not found", file=source) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", file=source) from None
        except UnicodeDecodeError:
            raise ConfigError("not UTF-8 text", file=source) from None
        base_dir = file_path.resolve().parent
    return text, source, base_dir


def parse_text(
    text: str,
    *,
    source: str = "<string>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    listen: tuple[str | None, int | None] = (None, None),
) -> ParsedConfig:
    """Parse and check config text.

    ``listen`` overrides ``api.host`` and ``api.port`` (``keyturn serve --host/--port``) before the
    checks, so a derived ``api.public_url`` follows them.
    """
    base_dir = base_dir or Path.cwd()
    data = load_yaml(text, source)
    if data is None:
        data = LineDict()
    if not isinstance(data, Mapping):
        raise ConfigError(
            "the top level must be a mapping of sections (api:, storage:, auth: ...)", file=source
        )
    if "$schema" in data:  # Arcade's files name their JSON schema; nothing to apply
        schema_free = LineDict({k: v for k, v in data.items() if k != "$schema"})
        schema_free.line = getattr(data, "line", None)
        schema_free.lines = dict(getattr(data, "lines", {}))
        data = schema_free
    ctx = Context(
        source=source,
        substitute=Substituter(env, base_dir, source),
        ignored_keys=IGNORED_SECTIONS,
        base_dir=base_dir,
    )
    config = from_data(Config, data, ctx=ctx)
    host, port = listen
    if host is not None or port is not None:
        api = dataclasses.replace(
            config.api,
            host=host if host is not None else config.api.host,
            port=port if port is not None else config.api.port,
        )
        config = dataclasses.replace(config, api=api)
    config = compat.apply_telemetry(config, data)
    config = compat.apply_security(config, data, ctx)
    config = _check(config, data, ctx, base_dir)
    compat.check_redirect_urls(config, data, ctx)
    _check_workers(config, data, ctx)
    check_mcp(config, data, ctx)
    check_webhooks(config, data, ctx, allow_http=config.api.development)
    return ParsedConfig(config, data, ctx, source, base_dir)


def is_loopback_url(url: str) -> bool:
    return is_loopback_host(urlsplit(url).hostname)


def _check(config: Config, data: Any, ctx: Context, base_dir: Path) -> Config:
    api = config.api
    # public_url
    public_url = api.public_url or f"http://{_url_host(api.host)}:{api.port}"
    parts = urlsplit(public_url)
    line = _line(data, "api", "public_url")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ctx.error(
            f"must be an absolute http(s) URL without query, got {public_url!r}", "api.public_url", line
        )
    if parts.scheme == "http" and not api.development and not is_loopback_url(public_url):
        raise ctx.error(
            "must use https unless it is a loopback address or api.development is true",
            "api.public_url",
            line,
        )
    api = dataclasses.replace(api, public_url=public_url.rstrip("/"))
    if not 0 <= api.port <= 65535:
        raise ctx.error("must be between 0 and 65535", "api.port", _line(data, "api", "port"))
    if api.event_loop == "uvloop" and not uvloop_available():
        raise ctx.error(
            "uvloop is not installed (it is a dependency except on Windows): use auto or asyncio",
            "api.event_loop",
            _line(data, "api", "event_loop"),
        )
    # storage
    storage = config.storage
    url = storage.url
    given = [k for k in ("url", "sqlite", "postgres") if getattr(storage, k) is not None]
    if len(given) > 1:
        raise ctx.error(
            f"give one of url, sqlite, postgres (got {', '.join(given)})", "storage", _line(data, "storage")
        )
    if storage.sqlite is not None:
        url = "sqlite+aiosqlite:///" + storage.sqlite.connection_string
    elif storage.postgres is not None and storage.postgres.data_path is not None:
        url = _embedded(storage.postgres, data, ctx, base_dir)
    elif storage.postgres is not None:
        pg = storage.postgres
        auth = quote(pg.user, safe="") + (":" + quote(pg.password, safe="") if pg.password else "")
        host = pg.host or "127.0.0.1"
        url = f"postgresql+asyncpg://{auth}@{host}:{pg.port}/{quote(pg.db, safe='')}"
        if pg.sslmode:
            url += f"?ssl={quote(pg.sslmode, safe='')}"
    elif url is None:
        url = "sqlite+aiosqlite:///" + DEFAULT_SQLITE
    if url.startswith("sqlite"):
        prefix, _, db_path = url.partition(":///")
        if not _ or not prefix.startswith("sqlite"):
            raise ctx.error(
                "a SQLite URL looks like sqlite+aiosqlite:///path/to/keyturn.db", "storage.url", None
            )
        if prefix == "sqlite":
            prefix = "sqlite+aiosqlite"
        if db_path and db_path != ":memory:" and not db_path.startswith("/"):
            db_path = str(base_dir / db_path)
        url = f"{prefix}:///{db_path}"
    elif url.startswith(("postgresql://", "postgres://")):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    elif not url.startswith("postgresql+asyncpg://"):
        raise ctx.error(
            "must be sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db",
            "storage.url",
            _line(data, "storage", "url"),
        )
    storage = dataclasses.replace(storage, url=url)
    # security
    security = config.security
    keys = security.root_keys
    ids = [k.id for k in keys]
    written_as = "encryption_keys" if security.encryption_keys else "root_keys"
    for i, key in enumerate(keys):
        key_path = f"security.{written_as}[{i}]"
        raw_key = section(data, "security", written_as)
        key_line = field_line(raw_key, i) if raw_key is not None else None
        if ids.count(key.id) > 1:
            raise ctx.error(f"duplicate key id {key.id!r}", f"{key_path}.id", key_line)
        if (key.value is None) == (key.value_path is None):
            raise ctx.error("give value or value_path (one of them)", key_path, key_line)
        value = key.value
        if key.value_path is not None:
            try:
                value = (base_dir / key.value_path).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ctx.error(
                    f"cannot read {key.value_path!r}: {exc.strerror}", f"{key_path}.value_path", key_line
                ) from None
        assert value is not None
        check_root_key(value, key_path if security.encryption_keys else f"{key_path}.value", key_line, ctx)
    defaults = [k.id for k in keys if k.default]
    if len(defaults) > 1:
        raise ctx.error(
            f"only one key may be default: true (got {', '.join(defaults)})", "security.root_keys", None
        )
    if keys and not defaults and len(keys) > 1:
        raise ctx.error(
            "mark the key that encrypts new values with default: true", "security.root_keys", None
        )
    if not keys and not api.development:
        raise ctx.error(
            "at least one root key is required (keyturn keys generate); only api.development: true "
            "runs with a generated development key",
            "security.root_keys",
            _line(data, "security"),
        )
    verifier = security.user_verifier
    vline = _line(data, "security", "user_verifier")
    if verifier.mode == "custom":
        if not verifier.url:
            raise ctx.error("is required when mode is custom", "security.user_verifier.url", vline)
        check_url(verifier.url, "security.user_verifier.url", vline, ctx, allow_http=api.development)
    elif verifier.mode == "none" and not api.development and not is_loopback_url(api.public_url or ""):
        raise ctx.error(
            "mode none lets whoever opens the link complete a flow for the user; it is allowed only with "
            "api.development: true or a loopback api.public_url; use mode: custom with your app's verify URL "
            "or mode: login",
            "security.user_verifier.mode",
            vline,
        )
    for api_key, why in UNAPPLIED_API_KEYS.items():
        if getattr(api, api_key) is not None:
            ctx.warnings.append(f"api.{api_key}: accepted but not applied: {why}")
    if api.idle_timeout <= 0:
        raise ctx.error(
            f"must be more than 0, got {float(api.idle_timeout):g}s",
            "api.idle_timeout",
            _line(data, "api", "idle_timeout"),
        )
    for limit in dataclasses.fields(security.rate_limiting):  # every count and the window (enabled is a bool)
        value = getattr(security.rate_limiting, limit.name)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            raise ctx.error(
                f"must be at least 1, got {value}",
                f"security.rate_limiting.{limit.name}",
                _line(data, "security", "rate_limiting", limit.name),
            )
    for i, entry in enumerate(security.next_uri_allowlist):
        p = urlsplit(entry)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise ctx.error(
                f"must be an absolute http(s) URL prefix, got {entry!r}",
                f"security.next_uri_allowlist[{i}]",
                None,
            )
    if config.mcp.auth == "none" and not api.development and not is_loopback_host(api.host):
        raise ctx.error(
            "none serves /mcp without an API key; it is allowed only when api.host is a loopback address "
            "or api.development is true",
            "mcp.auth",
            _line(data, "mcp", "auth"),
        )
    if config.audit.sinks and "file" in config.audit.sinks and not config.audit.file:
        raise ctx.error("is required when sinks include file", "audit.file", _line(data, "audit"))
    audit = config.audit
    if audit.file and not Path(audit.file).is_absolute():  # beside engine.yaml, like the SQLite file
        audit = dataclasses.replace(audit, file=str(base_dir / audit.file))
    return dataclasses.replace(config, api=api, storage=storage, audit=audit)


def _embedded(pg: PostgresStorage, data: Any, ctx: Context, base_dir: Path) -> str:
    """Arcade's embedded PostgreSQL (``data_path``, local development): Keyturn's SQLite default instead.

    The folder is not used: it may hold the data of Arcade's own embedded server.
    """
    line = _line(data, "storage", "postgres", "data_path")
    if pg.host is not None:
        raise ctx.error(
            "give data_path (embedded, local development) or host (a PostgreSQL server), not both",
            "storage.postgres.data_path",
            line,
        )
    db_file = base_dir / DEFAULT_SQLITE
    ctx.warnings.append(
        "storage.postgres.data_path: Keyturn has no embedded PostgreSQL; "
        f"using SQLite at {db_file} (set storage.postgres.host or storage.url for a PostgreSQL server)"
    )
    return "sqlite+aiosqlite:///" + str(db_file)


def check_root_key(value: str, path: str, line: int | None, ctx: Context) -> bytes:
    """A root key is the standard base64 of exactly 32 bytes; the error never shows the value."""
    try:
        return decode_key(value)
    except ValueError as exc:
        raise ctx.error(str(exc), path, line) from None


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - a wildcard bind is reached on loopback
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def check_url(url: str, path: str, line: int | None, ctx: Context, *, allow_http: bool) -> None:
    """An absolute ``https`` URL (``http`` only for loopback hosts or when ``allow_http``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ctx.error(f"must be an absolute http(s) URL, got {url!r}", path, line)
    if parts.scheme == "http" and not (allow_http or is_loopback_host(parts.hostname)):
        raise ctx.error(
            "must use https (http is allowed only for loopback hosts or with api.development: true), "
            f"got {url!r}",
            path,
            line,
        )


def _check_workers(config: Config, data: Any, ctx: Context) -> None:
    worker_ids = [w.id for w in config.workers] + [w.id for d in config.tools.directors for w in d.workers]
    for wid in worker_ids:
        if worker_ids.count(wid) > 1:
            raise ctx.error(f"duplicate worker id {wid!r}", "workers", _line(data, "workers"))
