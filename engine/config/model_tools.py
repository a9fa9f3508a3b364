"""The workers, tools and mcp sections of the typed config (re-exported by ``engine.config.model``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal

from engine.config.convert import Duration, secret


# ---- workers / tools -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WorkerConfig:
    id: str
    uri: str
    secret: str | None = secret(kind="secret")
    timeout: Duration = Duration(30)
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class WorkerHttp:  # Arcade: tools.directors[].workers[].http
    uri: str
    secret: str | None = secret(kind="secret")
    timeout: Duration = Duration(30)
    retry: int = 0


@dataclasses.dataclass(frozen=True)
class DirectorWorker:
    id: str
    http: WorkerHttp
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Director:
    id: str = "default"
    enabled: bool = True
    max_tools: int = 0
    workers: tuple[DirectorWorker, ...] = ()


@dataclasses.dataclass(frozen=True)
class HookConfig:
    """A ``tools.hooks[]`` entry: a server speaking Arcade's hook contract (logic_extensions/http/1.0)."""

    id: str
    kind: Literal["access", "pre", "post"]
    url: str
    token: str | None = secret(kind="hook_token")  # sent as Authorization: Bearer
    timeout: Duration = Duration(5)
    failure: Literal["open", "closed"] = "closed"  # what a timeout or a bad answer means
    priority: int = 0  # lower runs first
    tools: tuple[str, ...] = ("*",)  # globs over Toolkit.Tool names the hook governs
    cache: Duration | None = None  # access hooks only: how long a user's decision is kept (default 30s)


@dataclasses.dataclass(frozen=True)
class ApprovalRule:
    """A ``tools.approval[]`` entry: calls of matching tools wait for a person's (or the app's) decision."""

    tools: tuple[str, ...]
    approver: Literal["user", "app"] = "user"
    ttl: Duration = Duration(600)


@dataclasses.dataclass(frozen=True)
class ToolsConfig:
    directors: tuple[Director, ...] = ()
    secrets: Mapping[str, str] = secret(factory=dict, kind="secret")
    catalog_refresh: Duration = Duration(60)
    hooks: tuple[HookConfig, ...] = ()
    approval: tuple[ApprovalRule, ...] = ()


# ---- mcp -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RequiresAuth:
    provider: str
    scopes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class McpServerConfig:
    id: str
    url: str
    requires_auth: RequiresAuth | None = None
    timeout: Duration = Duration(30)


McpAuthMode = Literal["api_key", "none", "oauth", "jwt"]


@dataclasses.dataclass(frozen=True)
class McpOAuthClient:
    """A client listed in config (``mcp.oauth.clients[]``): no registration needed."""

    client_id: str
    redirect_uris: tuple[str, ...]
    client_name: str | None = None
    client_secret: str | None = secret(kind="client_secret")  # none: a public client (PKCE only)


@dataclasses.dataclass(frozen=True)
class ClientMetadataConfig:
    """Client ID Metadata Documents: an https ``client_id`` whose JSON document Keyturn fetches."""

    enabled: bool = True
    ca_file: str | None = None  # extra CA certificates (PEM) trusted for these fetches
    max_bytes: int = 5120
    timeout: Duration = Duration(5)
    cache_ttl: Duration = Duration(300)


@dataclasses.dataclass(frozen=True)
class McpOAuthConfig:
    """``mcp.auth: oauth``: Keyturn's own authorization server for MCP clients."""

    registration: Literal["open", "off"] = "open"  # RFC 7591 dynamic client registration
    clients: tuple[McpOAuthClient, ...] = ()
    client_metadata: ClientMetadataConfig = dataclasses.field(default_factory=ClientMetadataConfig)
    access_token_ttl: Duration = Duration(900)
    refresh_token_ttl: Duration = Duration(30 * 86400)


@dataclasses.dataclass(frozen=True)
class McpJwtConfig:
    """``mcp.auth: jwt``: access tokens (JWTs) from the organisation's own authorization server."""

    issuer: str
    user_claim: str = "sub"
    audience: str | None = None  # default: the MCP URL (or the gateway's)
    jwks_uri: str | None = None  # default: from the issuer's metadata (RFC 8414 / OpenID discovery)
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256", "EdDSA")
    scopes: tuple[str, ...] = ()  # scopes every token must carry (also announced as scopes_supported)


@dataclasses.dataclass(frozen=True)
class GatewayConfig:
    """``mcp.gateways[]``: a subset of the tools at ``/mcp/{slug}``."""

    slug: str
    tools: tuple[str, ...] = ()  # globs over Toolkit.Tool names ("Gmail.*", "Github.ListRepos")
    title: str | None = None
    instructions: str | None = None
    auth: McpAuthMode | None = None  # default: mcp.auth


@dataclasses.dataclass(frozen=True)
class McpConfig:
    enabled: bool = True
    auth: McpAuthMode = "api_key"
    default_user: str | None = None
    allowed_origins: tuple[str, ...] = ()
    servers: tuple[McpServerConfig, ...] = ()
    oauth: McpOAuthConfig = dataclasses.field(default_factory=McpOAuthConfig)
    jwt: McpJwtConfig | None = None
    gateways: tuple[GatewayConfig, ...] = ()
