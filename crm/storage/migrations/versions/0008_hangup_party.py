"""who ended a call: consultations.hangup_party (caller, agent, ivr, system)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('consultations') as batch_op:
        batch_op.add_column(sa.Column('hangup_party', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('consultations') as batch_op:
        batch_op.drop_column('hangup_party')
