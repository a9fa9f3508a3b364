"""The provider schema: what an OAuth 2.0 provider needs, as data.

A built-in template (``providers/*.yaml``) and a custom ``auth.providers[].oauth2`` block share this
schema. Quirks are fields, not ``if provider == ...`` branches: Slack's nested token is a
``response_map`` path, its ``ok: false`` is ``success_field``, GitHub's form-encoded answer is
understood from its content type, Microsoft's ``{tenant}`` is a variable filled from config.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Literal

from engine.config.convert import alias

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
ContentType = Literal["application/x-www-form-urlencoded", "application/json"]


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """One HTTP request the engine makes to (or sends the browser to) a provider."""

    endpoint: str | None = None
    method: Literal["GET", "POST"] = "POST"
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # how the client authenticates at this endpoint (token, refresh, revocation, introspection)
    auth_method: AuthMethod | None = None
    request_content_type: ContentType = "application/x-www-form-urlencoded"
    # where values are found in the answer: name -> dotted path ("authed_user.access_token")
    response_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # a field that must be truthy when present (Slack's "ok")
    success_field: str | None = None


@dataclasses.dataclass(frozen=True)
class PKCESpec:
    enabled: bool = True
    code_challenge_method: Literal["S256"] = "S256"


@dataclasses.dataclass(frozen=True)
class OAuth2Spec:
    authorization_request: RequestSpec = alias("authorize_request", factory=RequestSpec)
    token_request: RequestSpec = dataclasses.field(default_factory=RequestSpec)
    refresh_request: RequestSpec | None = None
    revocation_request: RequestSpec | None = None
    user_info: RequestSpec | None = alias("user_info_request", default=None)
    token_introspection: RequestSpec | None = alias("token_introspection_request", default=None)
    scope_delimiter: str = " "
    # the authorization request parameter that carries scopes (Slack's user tokens: user_scope)
    scope_param: str = "scope"
    default_scopes: tuple[str, ...] = ()
    pkce: PKCESpec = dataclasses.field(default_factory=PKCESpec)
    # RFC 8707 resource indicator sent on the authorization, token and refresh requests (an upstream MCP
    # server's URL when its authorization server binds tokens to it)
    resource: str | None = None
    # OpenID Connect: discovery at {issuer}/.well-known/openid-configuration, iss checks, id_token
    issuer: str | None = None
    discovery: bool = False
    jwks_uri: str | None = None
    id_token_signing_algs: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    # units of expires_in in the token answer
    expires_in_unit: Literal["seconds", "milliseconds"] = "seconds"
    # non-secret values kept from the token answer: name -> path (Salesforce "instance_url")
    token_metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # the user's stable id in the user info answer (path); "sub" for OIDC
    user_id_path: str = "sub"


# ---- type: api_key (engine.providers.apikey) ----------------------------------------------------
@dataclasses.dataclass(frozen=True)
class KeyField:
    name: str
    label: str | None = None
    secret: bool = False
    pattern: str | None = None  # a regular expression the whole value must match

    def matches(self, value: str) -> bool:
        return self.pattern is None or re.fullmatch(self.pattern, value) is not None


@dataclasses.dataclass(frozen=True)
class KeyCheck:
    endpoint: str
    method: Literal["GET", "POST", "HEAD"] = "GET"
    header: str = "Authorization"
    prefix: str = "Bearer "  # written before the key in the header ("" for X-Api-Key: KEY)


@dataclasses.dataclass(frozen=True)
class ApiKeySpec:
    fields: tuple[KeyField, ...]
    check: KeyCheck | None = None

    @property
    def secret_field(self) -> KeyField:
        return next(f for f in self.fields if f.secret)
