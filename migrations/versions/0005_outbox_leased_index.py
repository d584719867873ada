"""an index of the outbox rows in flight

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_leased",
            ["org_id", "lease_batch"],
            unique=False,
            postgresql_where=sa.text("lease_batch IS NOT NULL"),
            sqlite_where=sa.text("lease_batch IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_leased")
