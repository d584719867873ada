"""delivery in parallel, limited by CRM account

Several batches of one organization may be in flight, so the single flusher slot goes; the rate
limit moves from the organization to the CRM account it spends (`rate_accounts`); an outage is
a pause with its start kept (`unreachable_since`); the claimable index follows the claim's order
to its last tie, and the customer index leads with the customer.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The claim's order, ties included, so a claim reads only as far as its batch; and no
    # index led by org_id alone, which a planner with stale statistics may prefer for a claim.
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_org_id_customer_id")
        batch_op.create_index(
            "ix_outbox_customer_id_org_id", ["customer_id", "org_id"], unique=False
        )
        batch_op.drop_index("ix_outbox_claimable")
        batch_op.create_index(
            "ix_outbox_claimable", ["org_id", "changed_at", "kind", "key"], unique=False,
            postgresql_where=sa.text("pending"), sqlite_where=sa.text("pending"),
        )  # fmt: skip
    op.create_table(
        "rate_accounts",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
        sa.Column("throttled_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_accounts")),
    )
    with op.batch_alter_table("delivery_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("unreachable_since", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.drop_column("tat")
        batch_op.drop_column("flusher")
        batch_op.drop_column("flusher_until")


def downgrade() -> None:
    with op.batch_alter_table("delivery_state", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("flusher_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("flusher", sa.String(length=32), nullable=True))
        batch_op.add_column(
            sa.Column(
                "tat",
                sa.DateTime(timezone=True),
                nullable=False,
                server_default=sa.text("CURRENT_TIMESTAMP"),
            )
        )
        batch_op.drop_column("unreachable_since")
    op.drop_table("rate_accounts")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_claimable")
        batch_op.create_index(
            "ix_outbox_claimable", ["org_id", "changed_at"], unique=False,
            postgresql_where=sa.text("pending"), sqlite_where=sa.text("pending"),
        )  # fmt: skip
        batch_op.drop_index("ix_outbox_customer_id_org_id")
        batch_op.create_index("ix_outbox_org_id_customer_id", ["org_id", "customer_id"], unique=False)
