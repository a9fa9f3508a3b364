"""Spellings from configs users paste, read with their meaning.

- Arcade's engine.yaml (``ArcadeAI/schemas`` ``engine/config/2.0``): ``$schema`` is ignored;
  ``telemetry.logging.{level, encoding}`` set Keyturn's log level and format where ``logging:`` does not;
  ``storage.postgres.data_path`` (embedded PostgreSQL) is handled by the loader.
- Seed 003's ``security:`` block: ``encryption_keys`` are root keys; ``authentication.token_exposure`` is
  ``security.token_exposure``; ``audit_logging`` can only be on; ``oauth.state_validation`` and
  ``oauth.pkce_enabled`` can only be true; ``oauth.redirect_urls`` must be callback URLs Keyturn serves
  under ``api.public_url``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from engine.config.convert import Context, field_line
from engine.config.model import Config, RootKeyConfig

# The callback paths Keyturn serves, relative to api.public_url (seed 003 registers /api/oauth/callback)
CALLBACK_PATHS = ("/v1/oauth/callback", "/api/oauth/callback")
_LEVEL = {"warn": "warning"}
_AUDIT_ON = ("enabled", "on", "true", "yes")


def _section(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _line(data: Any, *keys: str) -> int | None:
    parent = _section(data, *keys[:-1])
    return field_line(parent, keys[-1]) if parent is not None else None


def apply_telemetry(config: Config, data: Any) -> Config:
    """Arcade's ``telemetry.logging`` applied to ``logging`` (keys written under ``logging:`` win)."""
    telemetry = config.telemetry.logging
    if telemetry is None:
        return config
    written = _section(data, "logging")
    written = written if isinstance(written, Mapping) else {}
    logging = config.logging
    if telemetry.level is not None and "level" not in written:
        level: Any = _LEVEL.get(telemetry.level, telemetry.level)
        logging = dataclasses.replace(logging, level=level)
    if telemetry.encoding is not None and "format" not in written:
        logging = dataclasses.replace(logging, format=telemetry.encoding)
    return dataclasses.replace(config, logging=logging)


def encryption_key_id(value: str) -> str:
    """A stable id for a root key given without one: its SHA-256 fingerprint (not the key, not reversible)."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        raw = value.encode()
    return "ek-" + hashlib.sha256(b"keyturn root key id\0" + raw).hexdigest()[:12]


def apply_security(config: Config, data: Any, ctx: Context) -> Config:
    """Seed 003's ``security`` block read into Keyturn's keys; settings Keyturn cannot honour are refused."""
    security = config.security
    root_keys = security.root_keys
    if security.encryption_keys:
        if root_keys:
            raise ctx.error(
                "give root_keys or encryption_keys, not both (encryption_keys are root keys without ids)",
                "security.encryption_keys",
                _line(data, "security", "encryption_keys"),
            )
        # the first encrypts new values; every one decrypts
        root_keys = tuple(
            RootKeyConfig(id=encryption_key_id(value), value=value, default=i == 0)
            for i, value in enumerate(security.encryption_keys)
        )
    auth = security.authentication
    token_exposure = security.token_exposure
    auth_line = _line(data, "security", "authentication")
    if auth.isolation_mode is not None and auth.isolation_mode != "strict":
        raise ctx.error(
            f"must be strict, got {auth.isolation_mode!r}: Keyturn never hands a token to a model or tool "
            "caller (only security.token_exposure: api returns it to API-key callers)",
            "security.authentication.isolation_mode",
            auth_line,
        )
    if auth.token_exposure is not None:
        written = _section(data, "security")
        both = isinstance(written, Mapping) and "token_exposure" in written
        if both and token_exposure != auth.token_exposure:
            raise ctx.error(
                f"is {auth.token_exposure!r} but security.token_exposure is {token_exposure!r}: give one",
                "security.authentication.token_exposure",
                auth_line,
            )
        token_exposure = auth.token_exposure
    audit = auth.audit_logging
    if audit is not None and str(audit).strip().lower() not in _AUDIT_ON:
        raise ctx.error(
            f"cannot be turned off (got {audit!r}): Keyturn audits every security event; "
            "choose where records go with audit.sinks",
            "security.authentication.audit_logging",
            auth_line,
        )
    if audit is not None and not config.audit.sinks:
        raise ctx.error(
            "audit_logging is enabled but audit.sinks is empty: name at least one sink",
            "audit.sinks",
            _line(data, "audit", "sinks"),
        )
    oauth = security.oauth
    oauth_line = _line(data, "security", "oauth")
    if not oauth.state_validation:
        raise ctx.error(
            "cannot be false: every callback's state is checked (single use, unexpired); it is what stops "
            "a forged callback from connecting an attacker's account (RFC 9700 4.7)",
            "security.oauth.state_validation",
            oauth_line,
        )
    if not oauth.pkce_enabled:
        raise ctx.error(
            "cannot be false: PKCE (S256) is always used; it stops a stolen authorization code from being "
            "redeemed (RFC 7636, RFC 9700 2.1.1). Only a provider template may turn it off for a provider "
            "that refuses it",
            "security.oauth.pkce_enabled",
            oauth_line,
        )
    security = dataclasses.replace(security, root_keys=root_keys, token_exposure=token_exposure)
    return dataclasses.replace(config, security=security)


def check_redirect_urls(config: Config, data: Any, ctx: Context) -> None:
    """Each ``security.oauth.redirect_urls`` entry is ``{api.public_url}`` + a callback path served."""
    public_url = (config.api.public_url or "").rstrip("/")
    accepted = [public_url + path for path in CALLBACK_PATHS]
    raw = _section(data, "security", "oauth", "redirect_urls")
    for i, url in enumerate(config.security.oauth.redirect_urls):
        line = field_line(raw, i) if raw is not None else None
        if url.rstrip("/") in accepted:
            continue
        given, public = urlsplit(url), urlsplit(public_url)
        if (given.scheme, given.netloc) != (public.scheme, public.netloc):
            why = f"is on {given.scheme}://{given.netloc}, but api.public_url is {public_url}"
        else:
            why = f"is not a callback Keyturn serves under api.public_url {public_url}"
        raise ctx.error(
            f"{url!r} {why}; register {' or '.join(accepted)} at the provider and list it here",
            f"security.oauth.redirect_urls[{i}]",
            line or _line(data, "security", "oauth"),
        )


def redirect_uri(config: Config) -> str | None:
    """The callback URL sent to providers when ``security.oauth.redirect_urls`` names one (the first)."""
    urls = config.security.oauth.redirect_urls
    return urls[0].rstrip("/") if urls else None
