"""initial schema: grants, flows, api_keys, leases, audit_events, meta

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "grants",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("access_token", sa.LargeBinary, nullable=False),
        sa.Column("refresh_token", sa.LargeBinary),
        sa.Column("id_token", sa.LargeBinary),
        sa.Column("user_info", sa.LargeBinary),
        sa.Column("token_type", sa.String(32), nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("subject", sa.String(256)),
        sa.Column("token_metadata", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("refreshed_at", TS),
        sa.Column("next_refresh_at", TS),
        sa.Column("refresh_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String(64)),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.UniqueConstraint("user_id", "provider_id", name="uq_grants_user_provider"),
    )
    op.create_index("ix_grants_due", "grants", ["status", "next_refresh_at"])
    op.create_index("ix_grants_provider", "grants", ["provider_id"])
    op.create_table(
        "flows",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("provider_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("state_hash", sa.String(64), unique=True),
        sa.Column("state_expires_at", TS),
        sa.Column("code_verifier", sa.LargeBinary),
        sa.Column("nonce", sa.LargeBinary),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("next_uri", sa.String(2048)),
        sa.Column("grant_id", sa.String(40)),
        sa.Column("error", sa.String(64)),
        sa.Column("error_description", sa.String(300)),
        sa.Column("pending_tokens", sa.LargeBinary),
        sa.Column("pending_user_info", sa.LargeBinary),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("completed_at", TS),
    )
    op.create_index("ix_flows_status_expires", "flows", ["status", "expires_at"])
    op.create_index("ix_flows_created", "flows", ["created_at"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("salt", sa.LargeBinary, nullable=False),
        sa.Column("key_hash", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS),
        sa.Column("revoked_at", TS),
    )
    op.create_table(
        "leases",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("time", TS, nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("provider", sa.String(64)),
        sa.Column("tool", sa.String(256)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("user_ref", sa.String(64)),
        sa.Column("source_ip", sa.String(64)),
        sa.Column("data", sa.JSON, nullable=False),
    )
    op.create_index("ix_audit_time", "audit_events", ["time"])
    op.create_index("ix_audit_user_ref", "audit_events", ["user_ref"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in ("meta", "audit_events", "leases", "api_keys", "flows", "grants"):
        op.drop_table(table)
