"""The tables (SQLAlchemy Core). Secret columns hold :mod:`engine.crypto` blobs, never plaintext."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

UTC_TS = sa.DateTime(timezone=True)

grants = sa.Table(
    "grants",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("provider_id", sa.String(64), nullable=False),
    # which of the user's accounts at the provider (work, personal); Arcade's callers only know "default"
    sa.Column("account", sa.String(128), nullable=False, server_default="default"),
    # the account the person chose as their default (else the first connected is the default)
    sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("access_token", sa.LargeBinary, nullable=False),
    sa.Column("refresh_token", sa.LargeBinary),
    sa.Column("id_token", sa.LargeBinary),
    sa.Column("user_info", sa.LargeBinary),
    sa.Column("token_type", sa.String(32), nullable=False),
    sa.Column("expires_at", UTC_TS),
    sa.Column("subject", sa.String(256)),
    sa.Column("token_metadata", sa.JSON, nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("updated_at", UTC_TS, nullable=False),
    sa.Column("refreshed_at", UTC_TS),
    sa.Column("next_refresh_at", UTC_TS),
    sa.Column("refresh_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.String(64)),
    sa.Column("version", sa.Integer, nullable=False, server_default="1"),
    sa.UniqueConstraint("user_id", "provider_id", "account", name="uq_grants_user_provider_account"),
    sa.Index("ix_grants_due", "status", "next_refresh_at"),
    sa.Index("ix_grants_provider", "provider_id"),
)

flows = sa.Table(
    "flows",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("provider_id", sa.String(64), nullable=False),
    sa.Column("account", sa.String(128), nullable=False, server_default="default"),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("state_hash", sa.String(64), unique=True),
    sa.Column("state_expires_at", UTC_TS),
    sa.Column("code_verifier", sa.LargeBinary),
    sa.Column("nonce", sa.LargeBinary),
    sa.Column("redirect_uri", sa.String(2048), nullable=False),
    sa.Column("next_uri", sa.String(2048)),
    sa.Column("grant_id", sa.String(40)),
    sa.Column("error", sa.String(64)),
    sa.Column("error_description", sa.String(300)),
    sa.Column("pending_tokens", sa.LargeBinary),
    sa.Column("pending_user_info", sa.LargeBinary),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Column("started_at", UTC_TS),
    sa.Column("completed_at", UTC_TS),
    # while a flow is pending: the digest of what it asks for, so an identical authorize gets it again
    sa.Column("reuse_key", sa.String(64)),
    sa.Index("ix_flows_status_expires", "status", "expires_at"),
    sa.Index("uq_flows_reuse_key", "reuse_key", unique=True),
    sa.Index("ix_flows_created", "created_at"),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
    sa.Column("salt", sa.LargeBinary, nullable=False),
    sa.Column("key_hash", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("last_used_at", UTC_TS),
    sa.Column("revoked_at", UTC_TS),
    # JSON list of tool globs the key is limited to; NULL: every tool
    sa.Column("tools", sa.Text),
)

leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time", UTC_TS, nullable=False),
    sa.Column("event", sa.String(64), nullable=False),
    sa.Column("outcome", sa.String(16)),
    sa.Column("provider", sa.String(64)),
    sa.Column("tool", sa.String(256)),
    sa.Column("request_id", sa.String(64)),
    sa.Column("user_ref", sa.String(64)),
    sa.Column("source_ip", sa.String(64)),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Index("ix_audit_time", "time"),
    sa.Index("ix_audit_user_ref", "user_ref"),
)
# the one list of an audit event's own columns (besides id, time and data): everything else goes into data
AUDIT_COLUMNS: tuple[str, ...] = tuple(c.name for c in audit_events.c if c.name not in ("id", "time", "data"))

# one row (id 1): on SQLite every write to grants bumps n (triggers of migration 0009); the grant cache
# reads it to know that no grant was written since it last checked (engine/store/grantcache.py)
grant_changes = sa.Table(
    "grant_changes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# signed-in browsers (engine.store.sessions): only the SHA-256 of the cookie's random id is kept
sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Column("last_used_at", UTC_TS, nullable=False),
    sa.Index("ix_sessions_user", "user_id"),
    sa.Index("ix_sessions_expires", "expires_at"),
)

# sign-ins in progress at the login provider: state (hashed), PKCE verifier and nonce (encrypted)
logins = sa.Table(
    "logins",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("state_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("code_verifier", sa.LargeBinary),
    sa.Column("nonce", sa.LargeBinary),
    sa.Column("next_path", sa.String(2048), nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Index("ix_logins_expires", "expires_at"),
)

# tool calls held for a person's (or the app's) decision (tools.approval); inputs encrypted
approvals = sa.Table(
    "approvals",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),  # sha256 of caller, user, tool and inputs
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("tool_name", sa.String(256), nullable=False),
    sa.Column("caller", sa.String(128), nullable=False),  # the API key's name (never the key)
    sa.Column("approver", sa.String(8), nullable=False),  # user | app
    sa.Column("inputs", sa.LargeBinary, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # pending | approved | denied | used
    sa.Column("reason", sa.String(1000)),
    sa.Column("decided_by", sa.String(300)),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Column("decided_at", UTC_TS),
    sa.Index("ix_approvals_digest", "digest"),
    sa.Index("ix_approvals_user_status", "user_id", "status"),
    sa.Index("ix_approvals_expires", "expires_at"),
)

# the webhook outbox (engine.store.outbox): each event is written in the transaction of the change it
# reports; ``dispatched_at`` is set once a delivery row exists for every endpoint that wants it
webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
    sa.Column("dispatched_at", UTC_TS),
    sa.Index("ix_webhook_events_undispatched", "dispatched_at", "created_at"),
)

# one row per (event, endpoint): pending until a 2xx answer (delivered) or give_up_after (failed)
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("event_id", sa.String(40), nullable=False),
    sa.Column("endpoint_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("next_attempt_at", UTC_TS),
    sa.Column("last_attempt_at", UTC_TS),
    sa.Column("last_error", sa.String(64)),
    sa.Column("delivered_at", UTC_TS),
    sa.UniqueConstraint("event_id", "endpoint_id", name="uq_webhook_deliveries_event_endpoint"),
    sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
)

# connect links (engine.store.connect): only the SHA-256 of the link's random token is kept
connect_sessions = sa.Table(
    "connect_sessions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("providers", sa.JSON),  # None: every configured provider
    sa.Column("next_uri", sa.String(2048)),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Index("ix_connect_sessions_expires", "expires_at"),
)

# every encrypted column, for key rotation: table -> columns
ENCRYPTED: dict[str, tuple[str, ...]] = {
    "grants": ("access_token", "refresh_token", "id_token", "user_info"),
    "flows": ("code_verifier", "nonce", "pending_tokens", "pending_user_info"),
    "logins": ("code_verifier", "nonce"),
    "approvals": ("inputs",),
}

# ---- the MCP authorization server (engine.store.mcp_oauth): codes and tokens kept only as SHA-256 ----
mcp_clients = sa.Table(
    "mcp_clients",
    metadata,
    sa.Column("client_id", sa.String(64), primary_key=True),
    sa.Column("secret_hash", sa.String(64)),  # none: a public client
    sa.Column("client_metadata", sa.JSON, nullable=False),  # redirect_uris, client_name, grant_types, ...
    sa.Column("created_at", UTC_TS, nullable=False),
)

mcp_codes = sa.Table(
    "mcp_codes",
    metadata,
    sa.Column("code_hash", sa.String(64), primary_key=True),
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("redirect_uri", sa.String(2048), nullable=False),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("scope", sa.String(1024), nullable=False),
    sa.Column("code_challenge", sa.String(128), nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Column("used_at", UTC_TS),
    sa.Column("family_id", sa.String(40)),  # the tokens it was exchanged for (revoked on a replay)
    sa.Index("ix_mcp_codes_expires", "expires_at"),
)

mcp_tokens = sa.Table(
    "mcp_tokens",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("kind", sa.String(8), nullable=False),  # access | refresh
    sa.Column("family_id", sa.String(40), nullable=False),  # every token descended from one code
    sa.Column("client_id", sa.String(2048), nullable=False),
    sa.Column("user_id", sa.String(256), nullable=False),
    sa.Column("resource", sa.String(2048), nullable=False),
    sa.Column("scope", sa.String(1024), nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
    sa.Column("expires_at", UTC_TS, nullable=False),
    sa.Column("used_at", UTC_TS),  # a refresh token once rotated
    sa.Column("revoked_at", UTC_TS),
    sa.Index("ix_mcp_tokens_family", "family_id"),
    sa.Index("ix_mcp_tokens_expires", "expires_at"),
)

mcp_consents = sa.Table(
    "mcp_consents",
    metadata,
    sa.Column("user_id", sa.String(256), primary_key=True),
    sa.Column("client_id", sa.String(2048), primary_key=True),
    sa.Column("scope", sa.String(1024), nullable=False),
    sa.Column("created_at", UTC_TS, nullable=False),
)
