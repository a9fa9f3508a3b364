"""The ``login:`` section: sign-in through an OpenID provider of ``auth.providers`` (DESIGN.md "Sign-in").

Checked after the providers are resolved: ``login.provider`` must name an enabled provider with an
``oauth2.issuer`` (plain OAuth 2 cannot say who signed in), and ``security.user_verifier.mode: login``
needs this section.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from engine.config.convert import Context, field_line
from engine.config.model import Config
from engine.providers.model import Provider

_DOMAIN = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
_CLAIM = re.compile(r"^[A-Za-z0-9_.:/-]{1,128}$")


def _line(data: Any, *keys: str) -> int | None:
    for key in keys[:-1]:
        data = data.get(key) if isinstance(data, Mapping) else None
    return field_line(data, keys[-1]) if data is not None else None


def check_login(config: Config, providers: Mapping[str, Provider], data: Any, ctx: Context) -> Config:
    """Refuse a login section that cannot sign anyone in; lower-case ``allowed_domains``."""
    login = config.login
    verifier = config.security.user_verifier
    if login is None:
        if verifier.mode == "login":
            raise ctx.error(
                "mode login signs people in through the login: section, which is missing; add "
                "login: {provider: <an auth.providers id with an issuer>, user_claim: email}",
                "security.user_verifier.mode",
                _line(data, "security", "user_verifier"),
            )
        return config
    provider = providers.get(login.provider)
    if provider is None:
        raise ctx.error(
            f"names provider {login.provider!r}, which is not an enabled auth.providers[] id",
            "login.provider",
            _line(data, "login", "provider"),
        )
    if provider.oauth2.issuer is None:
        raise ctx.error(
            f"provider {login.provider!r} is not an OpenID provider: sign-in needs OpenID Connect "
            "(give it oauth2.issuer so its id_tokens can be checked)",
            "login.provider",
            _line(data, "login", "provider"),
        )
    if not _CLAIM.match(login.user_claim):
        raise ctx.error(
            f"must be a claim name such as email, sub or preferred_username, got {login.user_claim!r}",
            "login.user_claim",
            _line(data, "login", "user_claim"),
        )
    if float(login.session_ttl) < 60:
        raise ctx.error("must be at least 1m", "login.session_ttl", _line(data, "login", "session_ttl"))
    domains = []
    for i, domain in enumerate(login.allowed_domains):
        d = domain.strip().lower().lstrip("@")
        if not _DOMAIN.match(d):
            raise ctx.error(
                f"must be a domain such as example.com, got {domain!r}", f"login.allowed_domains[{i}]", None
            )
        domains.append(d)
    return dataclasses.replace(config, login=dataclasses.replace(login, allowed_domains=tuple(domains)))
