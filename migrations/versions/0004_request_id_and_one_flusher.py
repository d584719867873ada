"""request id in the outbox, one flusher per destination

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 12:08:53.458187
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    
    with op.batch_alter_table('delivery_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('flusher', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('flusher_until', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('request_id', sa.String(length=64), nullable=True))

    


def downgrade() -> None:
    
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('request_id')

    with op.batch_alter_table('delivery_state', schema=None) as batch_op:
        batch_op.drop_column('flusher_until')
        batch_op.drop_column('flusher')

    
