"""customer lists

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 11:58:51.284242
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    op.create_table('customer_lists',
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('last_run_id', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('org_id', 'id', name=op.f('pk_customer_lists'))
    )
    op.create_table('list_members',
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('list_id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('org_id', 'list_id', 'customer_id', name=op.f('pk_list_members'))
    )
    op.create_table('list_staging',
    sa.Column('run_id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('run_id', 'customer_id', name=op.f('pk_list_staging'))
    )
    op.create_table('list_sync_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('org_id', sa.String(length=64), nullable=False),
    sa.Column('list_id', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('next_url', sa.Text(), nullable=True),
    sa.Column('previous_url', sa.Text(), nullable=True),
    sa.Column('pages', sa.Integer(), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('adds', sa.Integer(), nullable=False),
    sa.Column('removes', sa.Integer(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_list_sync_runs'))
    )
    with op.batch_alter_table('list_sync_runs', schema=None) as batch_op:
        batch_op.create_index('uq_list_sync_runs_running', ['org_id', 'list_id'], unique=True, postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lists_synced_at', sa.DateTime(timezone=True), nullable=True))

    


def downgrade() -> None:
    
    with op.batch_alter_table('organizations', schema=None) as batch_op:
        batch_op.drop_column('lists_synced_at')

    with op.batch_alter_table('list_sync_runs', schema=None) as batch_op:
        batch_op.drop_index('uq_list_sync_runs_running', postgresql_where=sa.text("status = 'running'"), sqlite_where=sa.text("status = 'running'"))

    op.drop_table('list_sync_runs')
    op.drop_table('list_staging')
    op.drop_table('list_members')
    op.drop_table('customer_lists')
    
