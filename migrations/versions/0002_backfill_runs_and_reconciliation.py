"""backfill runs and reconciliation

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 11:26:58.404275
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('backfill_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('next_url', sa.Text(), nullable=True),
    sa.Column('previous_url', sa.Text(), nullable=True),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('invalid', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_backfill_runs'))
    )
    with op.batch_alter_table('backfill_runs', schema=None) as batch_op:
        batch_op.create_index('uq_backfill_runs_running', ['org_id'], unique=True, postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reconciled_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reconciled_at', sa.DateTime(timezone=True), nullable=True))

    


def downgrade() -> None:
    
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('reconciled_at')
        batch_op.drop_column('reconciled_until')

    with op.batch_alter_table('backfill_runs', schema=None) as batch_op:
        batch_op.drop_index('uq_backfill_runs_running', postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    op.drop_table('backfill_runs')
    
