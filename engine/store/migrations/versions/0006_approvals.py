"""approvals: tool calls held for a decision (tools.approval), inputs encrypted

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("tool_name", sa.String(256), nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("approver", sa.String(8), nullable=False),
        sa.Column("inputs", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(1000)),
        sa.Column("decided_by", sa.String(300)),
        sa.Column("created_at", UTC_TS, nullable=False),
        sa.Column("expires_at", UTC_TS, nullable=False),
        sa.Column("decided_at", UTC_TS),
    )
    op.create_index("ix_approvals_digest", "approvals", ["digest"])
    op.create_index("ix_approvals_user_status", "approvals", ["user_id", "status"])
    op.create_index("ix_approvals_expires", "approvals", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_approvals_expires", table_name="approvals")
    op.drop_index("ix_approvals_user_status", table_name="approvals")
    op.drop_index("ix_approvals_digest", table_name="approvals")
    op.drop_table("approvals")
