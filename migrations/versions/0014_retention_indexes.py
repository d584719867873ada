"""retention: indexes for finding old events, kept bodies and events a dead letter points at

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DONE = "status IN ('applied', 'ignored')"
KEPT = f"{DONE} AND body <> ''"


def upgrade() -> None:
    for name, where in (("ix_inbox_done_received_at", DONE), ("ix_inbox_body_kept_received_at", KEPT)):
        op.create_index(
            name, "inbox", ["received_at"], postgresql_where=sa.text(where), sqlite_where=sa.text(where)
        )
    op.create_index(
        "ix_dead_letters_inbox_id",
        "dead_letters",
        ["inbox_id"],
        postgresql_where=sa.text("inbox_id IS NOT NULL"),
        sqlite_where=sa.text("inbox_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_dead_letters_inbox_id", table_name="dead_letters")
    op.drop_index("ix_inbox_body_kept_received_at", table_name="inbox")
    op.drop_index("ix_inbox_done_received_at", table_name="inbox")
