"""payment history: how far back an organization's payments are read, and the backfill's phase

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "payment_history", sa.String(length=40), nullable=False,
                server_default="days:365",
            )  # fmt: skip
        )
    with op.batch_alter_table("backfill_runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("phase", sa.String(length=16), nullable=False, server_default="customers")
        )
        batch_op.add_column(
            sa.Column("with_payments", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("payments_from", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("payments", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("backfill_runs", schema=None) as batch_op:
        batch_op.drop_column("payments")
        batch_op.drop_column("payments_from")
        batch_op.drop_column("with_payments")
        batch_op.drop_column("phase")
    with op.batch_alter_table("organizations", schema=None) as batch_op:
        batch_op.drop_column("payment_history")
