"""list resync staging: a table of each run's own instead of one table keyed by the run

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A resync running across the change staged some pages where the new code does not look: it
# is stopped (the stored membership is untouched) and the next one reads the list afresh.
INTERRUPTED = (
    "UPDATE list_sync_runs SET status = 'failed', finished_at = CURRENT_TIMESTAMP,"
    " last_error = 'interrupted by an upgrade (revision {revision}): the next resync reads"
    " the list afresh' WHERE status = 'running'"
)


def upgrade() -> None:
    op.execute(INTERRUPTED.format(revision=revision))
    op.execute("DELETE FROM list_run_pages")
    op.drop_index("ix_list_staging_run_id", table_name="list_staging")
    op.drop_table("list_staging")


def downgrade() -> None:
    op.execute(INTERRUPTED.format(revision="0009 downgrade"))
    op.execute("DELETE FROM list_run_pages")
    bind = op.get_bind()
    for name in sa.inspect(bind).get_table_names():
        if name.startswith("list_staging_") and name.removeprefix("list_staging_").isdigit():
            op.drop_table(name)
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
