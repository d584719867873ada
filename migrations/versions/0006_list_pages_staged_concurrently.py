"""list member pages staged concurrently: a page table, staging without a unique key

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 00:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTERRUPTED = (
    "UPDATE list_sync_runs SET status = 'failed', finished_at = CURRENT_TIMESTAMP,"
    " last_error = 'interrupted by an upgrade (revision {revision}): the next resync reads"
    " the list afresh' WHERE status = 'running'"
)


def upgrade() -> None:
    # A resync running across the upgrade has its staging in the old shape and no page rows:
    # it is stopped (the stored membership is untouched) and the next one starts afresh.
    op.execute(INTERRUPTED.format(revision=revision))
    op.drop_table("list_staging")
    op.create_table(
        "list_staging",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("first_name", sa.Text(), nullable=True),
        sa.Column("last_name", sa.Text(), nullable=True),
        sa.Column("phone_number", sa.Text(), nullable=True),
    )
    op.create_index("ix_list_staging_run_id", "list_staging", ["run_id"], unique=False)
    op.create_table(
        "list_run_pages",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=True),
        sa.Column("last", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_list_run_pages")),
    )


def downgrade() -> None:
    op.execute(INTERRUPTED.format(revision="0006 downgrade"))
    op.drop_table("list_run_pages")
    op.drop_index("ix_list_staging_run_id", table_name="list_staging")
    op.drop_table("list_staging")
    op.create_table(
        "list_staging",
        sa.Column("run_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "customer_id", name=op.f("pk_list_staging")),
    )
