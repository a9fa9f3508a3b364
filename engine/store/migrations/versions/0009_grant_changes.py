"""grant_changes: a counter every write to grants bumps (SQLite triggers), so the grant cache can tell
"nothing was written to grants" from "something was committed somewhere" (engine/store/grantcache.py)

On PostgreSQL the table exists (one schema for both) but has no triggers: the cache checks every hit
by query there.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TRIGGERS = ("grants_changed_insert", "grants_changed_update", "grants_changed_delete")


def upgrade() -> None:
    op.create_table(
        "grant_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("n", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO grant_changes (id, n) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for name, what in zip(TRIGGERS, ("INSERT", "UPDATE", "DELETE"), strict=True):
            op.execute(
                f"CREATE TRIGGER {name} AFTER {what} ON grants "
                "BEGIN UPDATE grant_changes SET n = n + 1 WHERE id = 1; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.drop_table("grant_changes")
