"""activity: per organization and minute, webhooks in, operations delivered, backlog and lag

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity_minutes",
        sa.Column("org_id", sa.String(64), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("webhooks", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("refused", sa.Integer(), nullable=False),
        sa.Column("retried", sa.Integer(), nullable=False),
        sa.Column("paused", sa.Integer(), nullable=False),
        sa.Column("backlog", sa.Integer(), nullable=True),
        sa.Column("lag_seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("org_id", "minute", name="pk_activity_minutes"),
    )
    op.create_index("ix_activity_minutes_minute", "activity_minutes", ["minute"])


def downgrade() -> None:
    op.drop_index("ix_activity_minutes_minute", table_name="activity_minutes")
    op.drop_table("activity_minutes")
