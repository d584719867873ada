"""customers: an index on the profile's email, lower-cased, for the dashboard's search

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 22:45:00

The expression is the one app/mirror/search.py queries (`email_key`), spelt per dialect;
text_pattern_ops serves the prefix search too on PostgreSQL. It is built inside the migration's
transaction (the release step holds the migration lock and alembic's transaction), which holds
writes to customers while it builds: about a second per million customers.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_customers_email"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {NAME} "
            "ON customers (lower(profile ->> 'email') text_pattern_ops)"
        )
    else:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {NAME} "
            "ON customers (lower(json_extract(profile, '$.email')))"
        )


def downgrade() -> None:
    op.execute(f"DROP INDEX IF EXISTS {NAME}")
