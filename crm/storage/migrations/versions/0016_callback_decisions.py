"""callback decisions: which call's decision made or merged into which callback request, so
a call event handed to the watcher twice (a control takeover) makes no second request and
counts no second merge

Revision ID: 0016_callback_decisions
Revises: 0015_reminder_once
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

import crm.storage.models

revision = '0016_callback_decisions'
down_revision = '0015_reminder_once'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('callback_decisions',
    sa.Column('key', sa.String(length=100), nullable=False),
    sa.Column('request_id', sa.Integer(), nullable=False),
    sa.Column('decided_at', crm.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['request_id'], ['callback_requests.id'], ondelete='CASCADE',
                            name='fk_callback_decisions_request_id_callback_requests'),
    sa.PrimaryKeyConstraint('key'))
    op.create_index(op.f('ix_callback_decisions_request_id'), 'callback_decisions',
                    ['request_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_callback_decisions_request_id'), table_name='callback_decisions')
    op.drop_table('callback_decisions')
