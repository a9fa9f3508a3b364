"""flows.reuse_key: one pending flow per (user, provider, scopes, next_uri) is handed out again

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.add_column(sa.Column("reuse_key", sa.String(64)))
    op.create_index("uq_flows_reuse_key", "flows", ["reuse_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_flows_reuse_key", table_name="flows")
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("reuse_key")
