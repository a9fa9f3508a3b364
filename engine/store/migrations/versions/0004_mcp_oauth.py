"""mcp_clients, mcp_codes, mcp_tokens, mcp_consents: the MCP authorization server (codes and tokens hashed)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mcp_clients",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("client_metadata", sa.JSON, nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
    )
    op.create_table(
        "mcp_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("redirect_uri", sa.String(2048), nullable=False),
        sa.Column("resource", sa.String(2048), nullable=False),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("expires_at", UTC_TS, nullable=False),
        sa.Column("used_at", UTC_TS),
        sa.Column("family_id", sa.String(40)),
    )
    op.create_index("ix_mcp_codes_expires", "mcp_codes", ["expires_at"])
    op.create_table(
        "mcp_tokens",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("family_id", sa.String(40), nullable=False),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("resource", sa.String(2048), nullable=False),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("expires_at", UTC_TS, nullable=False),
        sa.Column("used_at", UTC_TS),
        sa.Column("revoked_at", UTC_TS),
    )
    op.create_index("ix_mcp_tokens_family", "mcp_tokens", ["family_id"])
    op.create_index("ix_mcp_tokens_expires", "mcp_tokens", ["expires_at"])
    op.create_table(
        "mcp_consents",
        sa.Column("user_id", sa.String(256), primary_key=True),
        sa.Column("client_id", sa.String(2048), primary_key=True),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mcp_consents")
    op.drop_index("ix_mcp_tokens_expires", table_name="mcp_tokens")
    op.drop_index("ix_mcp_tokens_family", table_name="mcp_tokens")
    op.drop_table("mcp_tokens")
    op.drop_index("ix_mcp_codes_expires", table_name="mcp_codes")
    op.drop_table("mcp_codes")
    op.drop_table("mcp_clients")
