"""Built-in provider templates, and the merge of an ``auth.providers[]`` entry over its template.

A template file (``engine/providers/templates/<id>.yaml``; ``providers/`` at the repository root
points there) holds::

    id: microsoft               # equals the file name
    name: Microsoft identity platform
    docs: https://learn.microsoft.com/...   # where every endpoint and quirk was checked
    vars: {tenant: common}      # URL placeholders: name -> default (null: the config must give it)
    oauth2: {...}               # engine.providers.schema.OAuth2Spec

An entry with ``provider_id`` deep-merges its own ``oauth2`` block over the template's (mappings
merge, other values replace, ``null`` removes) and fills ``{placeholders}`` from its ``vars``. An
entry without ``provider_id`` stands alone on its ``oauth2`` block.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.config.convert import Context, field_line, from_data, node_line
from engine.config.loader import check_url
from engine.config.model import ProviderConfig
from engine.config.yamlsrc import LineDict, load_yaml
from engine.errors import ConfigError
from engine.providers.apikey import resolve_api_key
from engine.providers.model import Provider
from engine.providers.schema import OAuth2Spec, RequestSpec

# provider_id values that mean "no template: the entry's own oauth2 block" (Arcade's custom providers)
CUSTOM_IDS = frozenset({"custom", "oauth2"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_VAR_VALUE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?::\d{1,5})?$")
# OAuth2Spec keys also accepted under Arcade's spellings
_ALIASES = {alias: f.name for f in dataclasses.fields(OAuth2Spec) for alias in f.metadata.get("aliases", ())}


@dataclasses.dataclass(frozen=True)
class Template:
    id: str
    name: str
    docs: str
    oauth2: Mapping[str, Any]
    vars: Mapping[str, str | None] = dataclasses.field(default_factory=dict)
    source: str = ""


def _templates_dir() -> Any:
    return resources.files("engine.providers") / "templates"


def template_ids() -> list[str]:
    """The ids of every built-in template, sorted."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _templates_dir().iterdir()
        if entry.name.endswith(".yaml")
    )


@functools.cache
def load_template(template_id: str) -> Template:
    """One built-in template, parsed and checked (``ConfigError`` for an unknown id)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", template_id) or template_id not in template_ids():
        raise ConfigError(f"no built-in provider template {template_id!r}{_suggest(template_id)}")
    entry = _templates_dir() / f"{template_id}.yaml"
    source = f"providers/{template_id}.yaml"
    data = load_yaml(entry.read_text(encoding="utf-8"), source)
    ctx = Context(source=source)
    template = from_data(Template, data, ctx=ctx)
    if template.id != template_id:
        raise ConfigError(f"id {template.id!r} differs from the file name", path="id", file=source)
    # the template must be valid on its own, placeholders filled with stand-ins
    stand_in = {name: default or "example" for name, default in template.vars.items()}
    filled = _fill(template.oauth2, stand_in, "oauth2", ctx, declared=set(template.vars))
    from_data(OAuth2Spec, filled, path="oauth2", ctx=ctx)
    return dataclasses.replace(template, source=source)


def _suggest(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, template_ids(), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _normalize(block: Mapping[str, Any]) -> LineDict:
    out = LineDict()
    out.line = node_line(block)
    for key, value in block.items():
        name = _ALIASES.get(str(key), str(key))
        out[name] = value
        line = field_line(block, key)
        if line is not None:
            out.lines[name] = line
    return out


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> LineDict:
    """Deep-merge ``over`` into ``base``: mappings merge, other values replace, ``None`` removes."""
    out = LineDict()
    out.line = node_line(over) or node_line(base)
    for key, value in base.items():
        out[key] = value
        line = field_line(base, key)
        if line is not None:
            out.lines[key] = line
    for key, value in over.items():
        line = field_line(over, key)
        if value is None:
            out.pop(key, None)
            continue
        current = out.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            out[key] = merge(current, value)
        else:
            out[key] = value
        if line is not None:
            out.lines[key] = line
    return out


def _fill(value: Any, values: Mapping[str, str], path: str, ctx: Context, *, declared: set[str]) -> Any:
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in values:
                return values[name]
            if name in declared:
                raise ctx.error(
                    f"placeholder {{{name}}} has no value: set vars.{name}", path, node_line(value)
                )
            return m.group(0)

        return _PLACEHOLDER.sub(one, value)
    if isinstance(value, Mapping):
        out = LineDict()
        out.line = node_line(value)
        for key, item in value.items():
            out[key] = _fill(item, values, f"{path}.{key}", ctx, declared=declared)
            line = field_line(value, key)
            if line is not None:
                out.lines[key] = line
        return out
    if isinstance(value, list | tuple):
        return [_fill(item, values, f"{path}[{i}]", ctx, declared=declared) for i, item in enumerate(value)]
    return value


def resolve_provider(
    entry: ProviderConfig, raw: Mapping[str, Any], path: str, ctx: Context, *, development: bool
) -> Provider:
    """Build the :class:`Provider` for one config entry (``raw`` is the entry as written, for lines)."""
    line = node_line(raw)
    oauth2_line = field_line(raw, "oauth2") or line
    declared: set[str] = set(entry.vars)
    values: dict[str, str] = {}
    if entry.provider_id and entry.provider_id not in CUSTOM_IDS:
        try:
            template = load_template(entry.provider_id)
        except ConfigError as exc:
            if exc.file:  # the template itself is broken: a packaging bug, say where
                raise
            raise ctx.error(exc.msg, f"{path}.provider_id", field_line(raw, "provider_id") or line) from None
        unknown = set(entry.vars) - set(template.vars)
        for name in sorted(unknown):
            known = ", ".join(sorted(template.vars)) or "none"
            raise ctx.error(
                f"template {template.id!r} has no variable {name!r} (it has: {known})",
                f"{path}.vars.{name}",
                field_line(raw.get("vars"), name) or line,
            )
        declared |= set(template.vars)
        values.update({k: v for k, v in template.vars.items() if v is not None})
        block: Mapping[str, Any] = merge(template.oauth2, _normalize(entry.oauth2 or {}))
    else:
        if entry.oauth2 is None:
            raise ctx.error(
                "needs provider_id (a built-in template) or an oauth2 block (a custom provider)", path, line
            )
        block = _normalize(entry.oauth2)
    for name, value in entry.vars.items():
        if not _VAR_VALUE.match(value):
            raise ctx.error(
                "must be a host name, domain or tenant id (letters, digits, '.', '-', '_', optional :port)",
                f"{path}.vars.{name}",
                field_line(raw.get("vars"), name) or line,
            )
        values[name] = value
    filled = _fill(block, values, f"{path}.oauth2", ctx, declared=declared)
    spec = from_data(OAuth2Spec, filled, path=f"{path}.oauth2", ctx=ctx)
    if spec.issuer is not None and "discovery" not in filled:
        spec = dataclasses.replace(spec, discovery=True)  # an issuer means discovery unless discovery: false
    _check_spec(spec, filled, f"{path}.oauth2", oauth2_line, ctx, development=development)
    if not entry.client_id:
        raise ctx.error("is required", f"{path}.client_id", line)
    if entry.refresh_concurrency is not None and entry.refresh_concurrency < 1:
        raise ctx.error("must be at least 1", f"{path}.refresh_concurrency", line)
    client_secret = entry.client_secret
    if entry.client_secret_path:
        if client_secret:
            raise ctx.error(
                "give client_secret or client_secret_path, not both", f"{path}.client_secret_path", line
            )
        secret_file = Path(entry.client_secret_path).expanduser()
        if not secret_file.is_absolute() and ctx.base_dir is not None:
            secret_file = ctx.base_dir / secret_file  # beside engine.yaml, wherever serve was started
        try:
            client_secret = secret_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ctx.error(
                f"cannot read {entry.client_secret_path!r}: {exc.strerror}",
                f"{path}.client_secret_path",
                line,
            ) from None
    if client_secret is None and spec.token_request.auth_method not in (None, "none"):
        raise ctx.error(
            f"is required by token_request.auth_method {spec.token_request.auth_method}",
            f"{path}.client_secret",
            line,
        )
    return Provider(
        id=entry.id,
        template_id=entry.provider_id if entry.provider_id not in CUSTOM_IDS else None,
        client_id=entry.client_id,
        client_secret=client_secret or None,
        oauth2=spec,
        description=entry.description,
        refresh_lead=entry.refresh_lead,
        max_token_age=entry.max_token_age,
        refresh_concurrency=entry.refresh_concurrency,
    )


def _check_spec(
    spec: OAuth2Spec, data: Mapping[str, Any], path: str, line: int | None, ctx: Context, *, development: bool
) -> None:
    oidc = spec.issuer is not None and spec.discovery  # endpoints may come from discovery
    response_type = spec.authorization_request.params.get("response_type", "code")
    if response_type != "code":
        raise ctx.error(
            f"must be code: Keyturn runs only the authorization code flow, got {response_type!r}",
            f"{path}.authorization_request.params.response_type",
            field_line(data, "authorization_request") or line,
        )
    requests: dict[str, RequestSpec | None] = {
        "authorization_request": spec.authorization_request,
        "token_request": spec.token_request,
        "refresh_request": spec.refresh_request,
        "revocation_request": spec.revocation_request,
        "user_info": spec.user_info,
        "token_introspection": spec.token_introspection,
    }
    for name, request in requests.items():
        key_line = field_line(data, name) or line
        if request is None:
            continue
        if request.endpoint is None:
            if name in ("authorization_request", "token_request") and oidc:
                continue  # found by discovery
            raise ctx.error("is required", f"{path}.{name}.endpoint", key_line)
        check_url(request.endpoint, f"{path}.{name}.endpoint", key_line, ctx, allow_http=development)
    if spec.resource is not None:
        _check_resource(spec.resource, f"{path}.resource", field_line(data, "resource") or line, ctx)
    if spec.issuer is not None:
        check_url(
            spec.issuer, f"{path}.issuer", field_line(data, "issuer") or line, ctx, allow_http=development
        )
        if not spec.discovery and spec.jwks_uri is None:
            raise ctx.error(
                "is required when issuer is set and discovery is false: without a key set no id_token "
                "from this provider can be checked, so every sign-in would fail at the callback "
                "(give jwks_uri, or drop discovery: false to find it at "
                f"{spec.issuer.rstrip('/')}/.well-known/openid-configuration)",
                f"{path}.jwks_uri",
                field_line(data, "discovery") or field_line(data, "issuer") or line,
            )
    if spec.jwks_uri is not None:
        jwks_line = field_line(data, "jwks_uri") or line
        check_url(spec.jwks_uri, f"{path}.jwks_uri", jwks_line, ctx, allow_http=development)
        if spec.issuer is None:
            raise ctx.error(
                "is required with jwks_uri: an id_token is checked against its issuer (iss) and key set",
                f"{path}.issuer",
                field_line(data, "jwks_uri") or line,
            )


def _check_resource(value: str, path: str, line: int | None, ctx: Context) -> None:
    """RFC 8707 section 2: an absolute URI without a fragment."""
    parts = urlsplit(value)
    if not parts.scheme or not (parts.netloc or parts.path) or parts.fragment or "#" in value or " " in value:
        raise ctx.error(
            f"must be an absolute URI without a fragment (RFC 8707), e.g. https://mcp.example.com/mcp, "
            f"got {value!r}",
            path,
            line,
        )


def resolve_providers(
    entries: tuple[ProviderConfig, ...], raw: Any, ctx: Context, *, development: bool
) -> dict[str, Provider]:
    """Every enabled provider by id; ids must be unique."""
    out: dict[str, Provider] = {}
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        item_raw = raw[i] if isinstance(raw, list) and i < len(raw) and isinstance(raw[i], Mapping) else {}
        path = f"auth.providers[{i}]"
        if entry.id in seen:
            raise ctx.error(
                f"duplicate provider id {entry.id!r} (also auth.providers[{seen[entry.id]}])",
                f"{path}.id",
                field_line(item_raw, "id") or node_line(item_raw),
            )
        seen[entry.id] = i
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", entry.id):
            raise ctx.error(
                "must be 1-64 letters, digits, '.', '_' or '-'", f"{path}.id", field_line(item_raw, "id")
            )
        if entry.type == "api_key":
            provider = resolve_api_key(entry, item_raw, path, ctx)
        else:
            provider = resolve_provider(entry, item_raw, path, ctx, development=development)
        if entry.enabled:
            out[entry.id] = provider
    return out
