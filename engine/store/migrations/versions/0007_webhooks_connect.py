"""webhook outbox and deliveries; connect links (hashed tokens)

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("dispatched_at", UTC_TS),
    )
    op.create_index("ix_webhook_events_undispatched", "webhook_events", ["dispatched_at", "created_at"])
    op.create_table(
        "webhook_deliveries",
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
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "connect_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("providers", sa.JSON),
        sa.Column("next_uri", sa.String(2048)),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("expires_at", UTC_TS, nullable=False),
    )
    op.create_index("ix_connect_sessions_expires", "connect_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_connect_sessions_expires", table_name="connect_sessions")
    op.drop_table("connect_sessions")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_events_undispatched", table_name="webhook_events")
    op.drop_table("webhook_events")
