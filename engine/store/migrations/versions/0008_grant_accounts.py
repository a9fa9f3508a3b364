"""grants.account and grants.is_default: several accounts per user and provider; flows.account

The unique key of a grant becomes (user_id, provider_id, account); every existing grant is the
``default`` account, so what was written for Arcade keeps working.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("account", sa.String(128), nullable=False, server_default="default"))
        batch.add_column(sa.Column("is_default", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.drop_constraint("uq_grants_user_provider", type_="unique")
        batch.create_unique_constraint("uq_grants_user_provider_account", ["user_id", "provider_id", "account"])
    with op.batch_alter_table("flows") as batch:
        batch.add_column(sa.Column("account", sa.String(128), nullable=False, server_default="default"))


def downgrade() -> None:
    with op.batch_alter_table("flows") as batch:
        batch.drop_column("account")
    op.execute("DELETE FROM grants WHERE account <> 'default'")
    with op.batch_alter_table("grants") as batch:
        batch.drop_constraint("uq_grants_user_provider_account", type_="unique")
        batch.create_unique_constraint("uq_grants_user_provider", ["user_id", "provider_id"])
        batch.drop_column("is_default")
        batch.drop_column("account")
