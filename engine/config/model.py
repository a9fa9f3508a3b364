"""The typed, frozen config: one dataclass per engine.yaml section (see DESIGN.md "engine.yaml")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from engine.config.convert import Duration, alias, secret
from engine.config.model_tools import (  # re-exported (__all__): users import them from here
    ApprovalRule,
    ClientMetadataConfig,
    Director,
    DirectorWorker,
    GatewayConfig,
    HookConfig,
    McpAuthMode,
    McpConfig,
    McpJwtConfig,
    McpOAuthClient,
    McpOAuthConfig,
    McpServerConfig,
    RequiresAuth,
    ToolsConfig,
    WorkerConfig,
    WorkerHttp,
)

__all__ = [
    "ApiConfig",
    "ApiKeyEntry",
    "ApprovalRule",
    "AuditConfig",
    "AuthConfig",
    "AuthenticationConfig",
    "Branding",
    "ClientMetadataConfig",
    "Config",
    "Director",
    "DirectorWorker",
    "GatewayConfig",
    "HookConfig",
    "LifecycleConfig",
    "LoggingConfig",
    "LoginConfig",
    "McpAuthMode",
    "McpConfig",
    "McpJwtConfig",
    "McpOAuthClient",
    "McpOAuthConfig",
    "McpServerConfig",
    "MetricsConfig",
    "OAuthSecurityConfig",
    "PostgresStorage",
    "ProviderConfig",
    "RateLimitConfig",
    "RequiresAuth",
    "RootKeyConfig",
    "SecurityConfig",
    "SqliteStorage",
    "StorageConfig",
    "TelemetryConfig",
    "TelemetryLogging",
    "ToolsConfig",
    "UserVerifierConfig",
    "WebhookConfig",
    "WebhookRetry",
    "WorkerConfig",
    "WorkerHttp",
]


# ---- api -------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Branding:
    name: str = "Keyturn"
    logo_url: str | None = None
    primary_color: str = "#1f6feb"
    support_url: str | None = None


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 9099
    public_url: str | None = None  # default: http://{host}:{port}
    development: bool = False
    branding: Branding = dataclasses.field(default_factory=Branding)
    max_body_bytes: int = alias("max_request_body_size", default=1_048_576)  # Arcade's spelling too
    shutdown_grace: Duration = Duration(10)
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-* headers are believed
    processes: int | Literal["auto"] = 1  # serving processes on the one port (auto: one per core)
    idle_timeout: Duration = Duration(75)  # a kept-alive connection with no request is closed after this
    # Arcade's server deadlines: accepted, not applied (aiohttp has no such deadline); the loader warns
    read_timeout: Duration | None = None
    write_timeout: Duration | None = None
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"  # auto: uvloop when importable


# ---- storage ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class SqliteStorage:
    connection_string: str = "./keyturn.db"


@dataclasses.dataclass(frozen=True)
class PostgresStorage:
    host: str | None = None  # default 127.0.0.1
    port: int = 5432
    user: str = "postgres"
    password: str | None = secret(kind="password")
    db: str = alias("database", "dbname", default="keyturn")
    sslmode: str | None = None
    # Arcade's embedded PostgreSQL (local development): Keyturn keeps a SQLite database in this folder
    data_path: str | None = None


@dataclasses.dataclass(frozen=True)
class StorageConfig:
    url: str | None = None  # default: sqlite+aiosqlite:///./keyturn.db
    sqlite: SqliteStorage | None = None  # Arcade spelling
    postgres: PostgresStorage | None = None  # Arcade spelling
    busy_timeout: Duration = Duration(5)
    pool_size: int = 10
    grant_cache_size: int = 10_000  # decrypted grants kept in memory, each use checked by version; 0: off


# ---- security --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RootKeyConfig:
    id: str
    value: str | None = secret(kind="root_key")
    value_path: str | None = None
    default: bool = False


@dataclasses.dataclass(frozen=True)
class UserVerifierConfig:
    mode: Literal["none", "custom", "login"] = "none"
    url: str | None = None


@dataclasses.dataclass(frozen=True)
class RateLimitConfig:
    enabled: bool = True
    max_auth_attempts: int = 5
    window_minutes: int = 15
    max_api_key_failures: int = 20  # per source IP per window
    max_login_starts: int = 30  # sign-ins started (GET /login) per source IP per window


@dataclasses.dataclass(frozen=True)
class AuthenticationConfig:
    """Seed 003's ``security.authentication`` block (read by ``engine.config.compat.apply_security``)."""

    isolation_mode: str | None = None  # only "strict": tokens never reach the model
    token_exposure: Literal["never", "api"] | None = None  # security.token_exposure
    audit_logging: bool | str | None = None  # enabled / true: audit is always on


@dataclasses.dataclass(frozen=True)
class OAuthSecurityConfig:
    """Seed 003's ``security.oauth`` block: state and PKCE are always on; the callback URLs to register."""

    state_validation: bool = True
    pkce_enabled: bool = True
    redirect_urls: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ApiKeyEntry:
    """A ``security.api_keys`` entry limited to some tools: ``{key, tools: [globs]}``."""

    key: str = dataclasses.field(metadata={"secret": True, "kind": "api_key"})
    tools: tuple[str, ...] = ()  # globs over Toolkit.Tool names; other tools are invisible to the key


@dataclasses.dataclass(frozen=True)
class SecurityConfig:
    root_keys: tuple[RootKeyConfig, ...] = dataclasses.field(default=(), metadata={"kind": "root_key"})
    # plain root keys (seed 003's spelling), each base64 of 32 bytes; become root_keys with derived ids
    encryption_keys: tuple[str, ...] = secret(default=(), kind="root_key")
    # plain keys (every tool) and {key, tools} entries (only the tools the globs name), mixed freely
    api_keys: tuple[str | ApiKeyEntry, ...] = secret(default=(), kind="api_key")
    token_exposure: Literal["never", "api"] = "never"
    authentication: AuthenticationConfig = dataclasses.field(default_factory=AuthenticationConfig)
    oauth: OAuthSecurityConfig = dataclasses.field(default_factory=OAuthSecurityConfig)
    user_verifier: UserVerifierConfig = dataclasses.field(default_factory=UserVerifierConfig)
    next_uri_allowlist: tuple[str, ...] = ()
    rate_limiting: RateLimitConfig = dataclasses.field(default_factory=RateLimitConfig)
    flow_ttl: Duration = Duration(600)


# ---- auth ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ProviderConfig:
    """One ``auth.providers[]`` entry as written; ``engine.providers`` resolves it with its template."""

    id: str
    provider_id: str | None = None  # a built-in template's id
    type: Literal["oauth2", "api_key"] = "oauth2"
    enabled: bool = True
    description: str | None = None
    client_id: str | None = None
    client_secret: str | None = secret(kind="client_secret")
    client_secret_path: str | None = dataclasses.field(default=None, metadata={"kind": "client_secret"})
    vars: Mapping[str, str] = dataclasses.field(default_factory=dict)  # template URL placeholders
    oauth2: Mapping[str, Any] | None = None  # raw: merged over the template, then validated
    refresh_lead: Duration | None = None
    max_token_age: Duration | None = None
    # type api_key (engine.providers.apikey): raw, checked there
    fields: tuple[Mapping[str, Any], ...] = ()
    check: Mapping[str, Any] | None = None
    refresh_concurrency: int | None = None  # refreshes in flight to this provider at most


@dataclasses.dataclass(frozen=True)
class AuthConfig:
    providers: tuple[ProviderConfig, ...] = ()


# ---- login ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LoginConfig:
    """Sign-in through the organisation's OpenID provider (``engine.providers.login`` checks it)."""

    provider: str  # an auth.providers[] id with an issuer
    user_claim: str = "email"  # email | sub | preferred_username | any claim of the id_token/user info
    session_ttl: Duration = Duration(12 * 3600)
    allowed_domains: tuple[str, ...] = ()  # domains of the verified email claim; empty: any


# ---- lifecycle -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LifecycleConfig:
    refresh_interval: Duration = Duration(30)
    refresh_lead: Duration = Duration(300)
    refresh_concurrency: int = 16
    refresh_jitter: Duration = Duration(2)
    refresh_timeout: Duration = Duration(15)
    lease_ttl: Duration = Duration(60)
    backoff_base: Duration = Duration(30)
    backoff_max: Duration = Duration(3600)
    failure_report_after: Duration = Duration(86400)
    max_token_age: Duration | None = None
    flow_retention: Duration = Duration(86400)
    grant_retention: Duration = Duration(30 * 86400)
    reap_interval: Duration = Duration(600)


# ---- webhooks --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class WebhookRetry:
    """Backoff between attempts (``initial`` doubling up to ``max``, with jitter) and when to give up."""

    initial: Duration = Duration(10)
    max: Duration = Duration(3600)
    give_up_after: Duration = Duration(86400)


@dataclasses.dataclass(frozen=True)
class WebhookConfig:
    """One ``webhooks[]`` endpoint (``engine.config.webhooks`` checks it; ``engine.webhooks`` delivers)."""

    id: str
    url: str
    secret: str | None = secret(kind="secret")  # whsec_ + base64 (Standard Webhooks)
    events: tuple[str, ...] = ()
    retry: WebhookRetry = dataclasses.field(default_factory=WebhookRetry)
    timeout: Duration = Duration(10)  # one delivery attempt, connect to last byte
    enabled: bool = True


# ---- audit / metrics / logging ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AuditConfig:
    sinks: tuple[Literal["stdout", "file", "database"], ...] = ("stdout",)
    file: str | None = None
    required: bool = False
    include_user_id: bool = False


@dataclasses.dataclass(frozen=True)
class MetricsConfig:
    enabled: bool = True
    address: str | None = None  # "127.0.0.1:9100": serve /metrics there instead of the main port
    bearer_token: str | None = secret(kind="metrics_token")


@dataclasses.dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: human-readable lines on a terminal, JSON otherwise (a pipe, a file, the journal)
    format: Literal["auto", "json", "console"] = "auto"


@dataclasses.dataclass(frozen=True)
class TelemetryLogging:  # Arcade: telemetry.logging
    level: Literal["debug", "info", "warn", "warning", "error"] | None = None
    encoding: Literal["json", "console"] | None = None


@dataclasses.dataclass(frozen=True)
class TelemetryConfig:
    """Arcade's ``telemetry`` section: ``logging`` applies to Keyturn's logs; OTEL keys are ignored."""

    logging: TelemetryLogging | None = None
    environment: str | None = None


# ---- the whole file --------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Config:
    api: ApiConfig = dataclasses.field(default_factory=ApiConfig)
    storage: StorageConfig = dataclasses.field(default_factory=StorageConfig)
    security: SecurityConfig = dataclasses.field(default_factory=SecurityConfig)
    auth: AuthConfig = dataclasses.field(default_factory=AuthConfig)
    login: LoginConfig | None = None
    lifecycle: LifecycleConfig = dataclasses.field(default_factory=LifecycleConfig)
    workers: tuple[WorkerConfig, ...] = ()
    tools: ToolsConfig = dataclasses.field(default_factory=ToolsConfig)
    mcp: McpConfig = dataclasses.field(default_factory=McpConfig)
    audit: AuditConfig = dataclasses.field(default_factory=AuditConfig)
    metrics: MetricsConfig = dataclasses.field(default_factory=MetricsConfig)
    logging: LoggingConfig = dataclasses.field(default_factory=LoggingConfig)
    telemetry: TelemetryConfig = dataclasses.field(default_factory=TelemetryConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
