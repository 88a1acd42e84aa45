"""recorded events: the bus event ids the consultation recorder has written (idempotent
writes when several processes record one stream)

Revision ID: 0010_recorded_events
Revises: 0009
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

import crm.storage.models

revision = '0010_recorded_events'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('recorded_events',
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', crm.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('event_id'))
    op.create_index(op.f('ix_recorded_events_recorded_at'), 'recorded_events',
                    ['recorded_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_recorded_events_recorded_at'), table_name='recorded_events')
    op.drop_table('recorded_events')
