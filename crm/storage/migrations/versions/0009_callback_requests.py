"""callback requests for missed callers

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

import crm.storage.models

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('callback_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caller_number', sa.String(length=64), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=True),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('created_at', crm.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('queued_at', crm.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('waited_s', sa.Float(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', crm.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('completed_at', crm.storage.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('consultation_id', sa.Integer(), nullable=True),
    sa.Column('last_consultation_id', sa.Integer(), nullable=True),
    sa.Column('assigned_agent_id', sa.Integer(), nullable=True),
    sa.Column('cancelled_by', sa.String(length=64), nullable=True),
    sa.Column('note', sa.String(length=256), nullable=True),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], ondelete='SET NULL',
                            name='fk_callback_requests_consultation_id_consultations'),
    sa.ForeignKeyConstraint(['last_consultation_id'], ['consultations.id'],
                            ondelete='SET NULL',
                            name='fk_callback_requests_last_consultation_id_consultations'),
    sa.ForeignKeyConstraint(['assigned_agent_id'], ['agents.id'], ondelete='SET NULL',
                            name='fk_callback_requests_assigned_agent_id_agents'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_callback_requests_caller_number'),
                              ['caller_number'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_requests_status'), ['status'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_callback_requests_consultation_id'),
                              ['consultation_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_callback_requests_assigned_agent_id'),
                              ['assigned_agent_id'], unique=False)
        batch_op.create_index('uq_callback_requests_open_number', ['caller_number'],
                              unique=True,
                              sqlite_where=sa.text("status IN ('pending', 'dialling')"),
                              postgresql_where=sa.text("status IN ('pending', 'dialling')"))


def downgrade() -> None:
    with op.batch_alter_table('callback_requests', schema=None) as batch_op:
        batch_op.drop_index('uq_callback_requests_open_number')
        batch_op.drop_index(batch_op.f('ix_callback_requests_assigned_agent_id'))
        batch_op.drop_index(batch_op.f('ix_callback_requests_consultation_id'))
        batch_op.drop_index(batch_op.f('ix_callback_requests_status'))
        batch_op.drop_index(batch_op.f('ix_callback_requests_caller_number'))
    op.drop_table('callback_requests')
