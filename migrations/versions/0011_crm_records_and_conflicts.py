"""what a CRM told us: its record and list ids, conflicts, why delivery is paused, and the
requests an account spent in the CRM's day

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "crm_contacts",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("record_id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "customer_id", name=op.f("pk_crm_contacts")),
    )
    op.create_table(
        "crm_lists",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("list_id", sa.String(length=64), nullable=False),
        sa.Column("crm_list_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "list_id", name=op.f("pk_crm_lists")),
    )
    op.create_table(
        "delivery_conflicts",
        sa.Column("org_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=400), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("existing_record_id", sa.String(length=32), nullable=True),
        sa.Column("detected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("org_id", "customer_id", name=op.f("pk_delivery_conflicts")),
    )
    with op.batch_alter_table("delivery_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pause_reason", sa.String(length=16), nullable=True))
    with op.batch_alter_table("rate_accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("throttle_reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("day_start", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("day_requests", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("rate_accounts", schema=None) as batch_op:
        batch_op.drop_column("day_requests")
        batch_op.drop_column("day_start")
        batch_op.drop_column("throttle_reason")
    with op.batch_alter_table("delivery_state", schema=None) as batch_op:
        batch_op.drop_column("pause_reason")
    op.drop_table("delivery_conflicts")
    op.drop_table("crm_lists")
    op.drop_table("crm_contacts")
