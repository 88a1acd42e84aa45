"""agents' interface language (the desk and console in zh_CN or English, per user)

Revision ID: 0014_agent_locale
Revises: 0013_category_tree
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0014_agent_locale'
down_revision = '0013_category_tree'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('locale', sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('agents', schema=None) as batch_op:
        batch_op.drop_column('locale')
