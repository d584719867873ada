"""list member page bodies compressed with lz4 (pglz where the server lacks it)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 04:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Measured on a 190 KB member page: stored uncompressed (0007) it is 95 TOAST chunks and
# 2.6 ms an INSERT; lz4 makes it ~10 chunks and 1.2 ms (pglz compresses as well but costs as
# much as it saves). Only bodies written from now on are compressed; none outlives its run.
# A server built without lz4 refuses the method: the column then keeps the default, pglz.
COMPRESS = """
DO $$
BEGIN
    ALTER TABLE list_run_pages ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 not supported by this server: page bodies compressed with pglz';
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE list_run_pages ALTER COLUMN body SET STORAGE EXTENDED")
        op.execute(COMPRESS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE list_run_pages ALTER COLUMN body SET COMPRESSION DEFAULT")
        op.execute("ALTER TABLE list_run_pages ALTER COLUMN body SET STORAGE EXTERNAL")
