"""case categories as a three-level tree: parent, level, limits in hours

Revision ID: 0010_category_tree
Revises: 0009
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0010_category_tree'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case_categories', schema=None) as batch_op:
        batch_op.add_column(sa.Column('parent_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('level', sa.Integer(), nullable=False,
                                      server_default='1'))
        batch_op.add_column(sa.Column('time_limit_hours', sa.Integer(), nullable=True))
        batch_op.alter_column('time_limit_days', existing_type=sa.Integer(), nullable=True)
        batch_op.create_index('ix_case_categories_parent_id', ['parent_id'], unique=False)
        batch_op.create_foreign_key('fk_case_categories_parent_id_case_categories',
                                    'case_categories', ['parent_id'], ['id'])


def downgrade() -> None:
    # the old schema needs a limit in days everywhere: hours rounded up, branches 1 day
    op.execute("UPDATE case_categories SET time_limit_days = CASE WHEN time_limit_hours "
               "IS NOT NULL THEN (time_limit_hours + 23) / 24 ELSE 1 END "
               "WHERE time_limit_days IS NULL")
    with op.batch_alter_table('case_categories', schema=None) as batch_op:
        batch_op.drop_constraint('fk_case_categories_parent_id_case_categories',
                                 type_='foreignkey')
        batch_op.drop_index('ix_case_categories_parent_id')
        batch_op.alter_column('time_limit_days', existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column('time_limit_hours')
        batch_op.drop_column('level')
        batch_op.drop_column('parent_id')
