"""The ``mcp:`` section's cross-checks (after the providers and ``login:`` are known).

- ``mcp.auth: oauth`` (or a gateway's ``auth: oauth``) signs people in through ``login:`` and verifies
  the tool authorizations its tokens start by the same sign-in: it needs ``login:`` and
  ``security.user_verifier.mode: login``.
- ``mcp.auth: jwt`` needs ``mcp.jwt.issuer`` (an http(s) URL; http only on loopback or in development).
- ``mcp.gateways[].slug``: lower-case letters, digits and dashes, unique; each has at least one tool glob.
- ``mcp.oauth.clients[]``: unique ids, redirect URIs https (http only on loopback), no fragment.
- ``mcp.allowed_origins[]``: each an origin (``scheme://host[:port]``, no path); ``*`` is refused (the
  origins get CORS on ``/mcp``, ``engine.mcp.cors``, and pass the Origin check: a wildcard would undo both).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.config.convert import Context, field_line
from engine.config.model import Config
from engine.net import is_loopback_host

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def _line(data: Any, *keys: str | int) -> int | None:
    for key in keys[:-1]:
        if isinstance(data, Mapping):
            data = data.get(key)
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return None
    return field_line(data, keys[-1]) if data is not None else None


def redirect_uri_ok(uri: str) -> bool:
    """An https redirect URI, or http on a loopback host (RFC 8252 native apps); never a fragment."""
    parts = urlsplit(uri)
    if parts.fragment or not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and is_loopback_host(parts.hostname))


def _check_origins(config: Config, data: Any, ctx: Context) -> None:
    for i, origin in enumerate(config.mcp.allowed_origins):
        parts = urlsplit(origin.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise ctx.error(
                "must be an origin such as https://app.example (scheme, host, optional port; "
                f"no path, no *), got {origin!r}",
                f"mcp.allowed_origins[{i}]",
                _line(data, "mcp", "allowed_origins"),
            )


def check_mcp(config: Config, data: Any, ctx: Context) -> None:
    mcp = config.mcp
    _check_origins(config, data, ctx)
    modes = {mcp.auth} | {g.auth for g in mcp.gateways if g.auth is not None}
    if "oauth" in modes:
        if config.login is None:
            raise ctx.error(
                "oauth signs people in through the login: section, which is missing; add "
                "login: {provider: <an auth.providers id with an issuer>, user_claim: email}",
                "mcp.auth",
                _line(data, "mcp", "auth"),
            )
        if config.security.user_verifier.mode != "login":
            raise ctx.error(
                "oauth needs security.user_verifier.mode: login, so that a tool authorization started "
                "with an MCP token completes only in a browser signed in as that token's user",
                "mcp.auth",
                _line(data, "mcp", "auth"),
            )
    if "jwt" in modes:
        if mcp.jwt is None:
            raise ctx.error(
                "jwt needs mcp.jwt: {issuer: https://idp.example, user_claim: sub}",
                "mcp.auth",
                _line(data, "mcp", "auth"),
            )
        issuer = urlsplit(mcp.jwt.issuer)
        if (
            issuer.scheme not in ("http", "https")
            or not issuer.hostname
            or (issuer.scheme == "http" and not (config.api.development or is_loopback_host(issuer.hostname)))
        ):
            raise ctx.error(
                f"must be an https URL (http only on loopback or in development), got {mcp.jwt.issuer!r}",
                "mcp.jwt.issuer",
                _line(data, "mcp", "jwt", "issuer"),
            )
    seen: set[str] = set()
    for i, gateway in enumerate(mcp.gateways):
        where = f"mcp.gateways[{i}]"
        if not _SLUG.match(gateway.slug):
            raise ctx.error(
                f"must be lower-case letters, digits and dashes (it is the path /mcp/<slug>), got "
                f"{gateway.slug!r}",
                f"{where}.slug",
                _line(data, "mcp", "gateways", i, "slug"),
            )
        if gateway.slug in seen:
            raise ctx.error(f"duplicate slug {gateway.slug!r}", f"{where}.slug", None)
        seen.add(gateway.slug)
        if not gateway.tools:
            raise ctx.error(
                'needs at least one tool glob, such as ["Gmail.*"]',
                f"{where}.tools",
                _line(data, "mcp", "gateways", i, "tools"),
            )
        if gateway.auth == "none" and not config.api.development and not is_loopback_host(config.api.host):
            raise ctx.error(
                "none is allowed only when api.host is a loopback address or api.development is true",
                f"{where}.auth",
                None,
            )
    ids: set[str] = set()
    for i, client in enumerate(mcp.oauth.clients):
        where = f"mcp.oauth.clients[{i}]"
        if not client.client_id or len(client.client_id) > 200 or client.client_id in ids:
            raise ctx.error(
                "must be a unique, non-empty id (at most 200 characters)", f"{where}.client_id", None
            )
        ids.add(client.client_id)
        if not client.redirect_uris:
            raise ctx.error("needs at least one redirect URI", f"{where}.redirect_uris", None)
        for j, uri in enumerate(client.redirect_uris):
            if not redirect_uri_ok(uri):
                raise ctx.error(
                    f"must be an https URL (http only on a loopback host), without a fragment, got {uri!r}",
                    f"{where}.redirect_uris[{j}]",
                    None,
                )
    if mcp.oauth.client_metadata.max_bytes < 512 or mcp.oauth.client_metadata.max_bytes > 65536:
        raise ctx.error("must be between 512 and 65536", "mcp.oauth.client_metadata.max_bytes", None)
    if float(mcp.oauth.access_token_ttl) < 60 or float(mcp.oauth.access_token_ttl) > 86400:
        raise ctx.error("must be between 1m and 24h", "mcp.oauth.access_token_ttl", None)
