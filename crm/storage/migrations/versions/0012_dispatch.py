"""dispatch and supervision: department requests, urges, reminders, department bindings

Existing cases keep their stages (accepted, dispatched, in_progress = in handling,
resolved = replied, closed): nothing to move; the new tables start empty.

Revision ID: 0012_dispatch
Revises: 0011_knowledge_base
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

import crm.storage.models

revision = '0012_dispatch'
down_revision = '0011_knowledge_base'
branch_labels = None
depends_on = None

UTC = crm.storage.models.UtcDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'dispatch_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('department_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('reason', sa.String(length=1000), nullable=False),
        sa.Column('requested_deadline', UTC, nullable=True),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('requested_by', sa.String(length=64), nullable=False),
        sa.Column('requested_at', UTC, nullable=False),
        sa.Column('decided_by', sa.String(length=64), nullable=True),
        sa.Column('decided_at', UTC, nullable=True),
        sa.Column('decision_note', sa.String(length=1000), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE',
                                name='fk_dispatch_requests_case_id_cases'),
        sa.ForeignKeyConstraint(['department_id'], ['departments.id'],
                                name='fk_dispatch_requests_department_id_departments'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_dispatch_requests_case_id', 'dispatch_requests', ['case_id'])
    op.create_index('ix_dispatch_requests_status', 'dispatch_requests', ['status'])
    op.create_table(
        'case_urges',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('at', UTC, nullable=False),
        sa.Column('channel', sa.String(length=16), nullable=False),
        sa.Column('consultation_id', sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE',
                                name='fk_case_urges_case_id_cases'),
        sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], ondelete='SET NULL',
                                name='fk_case_urges_consultation_id_consultations'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_case_urges_case_id', 'case_urges', ['case_id'])
    op.create_table(
        'case_reminders',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', sa.Integer(), nullable=False),
        sa.Column('department_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('deadline', UTC, nullable=False),
        sa.Column('at', UTC, nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['cases.id'], ondelete='CASCADE',
                                name='fk_case_reminders_case_id_cases'),
        sa.ForeignKeyConstraint(['department_id'], ['departments.id'],
                                name='fk_case_reminders_department_id_departments'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_case_reminders_case_id', 'case_reminders', ['case_id'])
    op.create_index('ix_case_reminders_department_id', 'case_reminders', ['department_id'])
    op.create_index('ix_case_reminders_at', 'case_reminders', ['at'])
    op.create_table(
        'api_token_departments',
        sa.Column('token_id', sa.Integer(), nullable=False),
        sa.Column('department_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['token_id'], ['api_tokens.id'], ondelete='CASCADE',
                                name='fk_api_token_departments_token_id_api_tokens'),
        sa.ForeignKeyConstraint(['department_id'], ['departments.id'],
                                name='fk_api_token_departments_department_id_departments'),
        sa.PrimaryKeyConstraint('token_id'))
    op.create_table(
        'agent_departments',
        sa.Column('agent_id', sa.Integer(), nullable=False),
        sa.Column('department_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], ondelete='CASCADE',
                                name='fk_agent_departments_agent_id_agents'),
        sa.ForeignKeyConstraint(['department_id'], ['departments.id'],
                                name='fk_agent_departments_department_id_departments'),
        sa.PrimaryKeyConstraint('agent_id'))


def downgrade() -> None:
    for table in ('agent_departments', 'api_token_departments', 'case_reminders',
                  'case_urges', 'dispatch_requests'):
        op.drop_table(table)
