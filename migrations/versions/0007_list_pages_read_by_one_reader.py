"""list member pages read by one reader: a page row holds the body until it is staged

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INTERRUPTED = (
    "UPDATE list_sync_runs SET status = 'failed', finished_at = CURRENT_TIMESTAMP,"
    " last_error = 'interrupted by an upgrade (revision {revision}): the next resync reads"
    " the list afresh' WHERE status = 'running'"
)
NOT_RUNNING = "run_id NOT IN (SELECT id FROM list_sync_runs WHERE status = 'running')"


def upgrade() -> None:
    # A resync running across the upgrade has page rows without bodies, and its queued tasks
    # (`lists.page`) are no longer registered: it is stopped (the stored membership is
    # untouched) and the next one starts afresh.
    op.execute(INTERRUPTED.format(revision=revision))
    op.execute(f"DELETE FROM list_run_pages WHERE {NOT_RUNNING}")
    op.execute(f"DELETE FROM list_staging WHERE {NOT_RUNNING}")
    with op.batch_alter_table("list_run_pages") as batch:
        batch.drop_column("last")
        batch.add_column(sa.Column("next_url", sa.Text(), nullable=True))
        batch.add_column(sa.Column("body", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        # Bodies are JSON read once: compressing them costs CPU on the reader's path for disk
        # held only until the page is staged.
        op.execute("ALTER TABLE list_run_pages ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute(INTERRUPTED.format(revision="0007 downgrade"))
    op.execute(f"DELETE FROM list_run_pages WHERE {NOT_RUNNING}")
    op.execute(f"DELETE FROM list_staging WHERE {NOT_RUNNING}")
    with op.batch_alter_table("list_run_pages") as batch:
        batch.drop_column("body")
        batch.drop_column("next_url")
        batch.add_column(sa.Column("last", sa.Boolean(), nullable=False, server_default=sa.false()))
