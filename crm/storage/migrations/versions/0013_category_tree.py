"""case categories as a three-level tree: parent, level, limits in hours

Columns added in place (no table rebuild on SQLite: cases refer to this table).

Revision ID: 0013_category_tree
Revises: 0012_dispatch
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

revision = '0013_category_tree'
down_revision = '0012_dispatch'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # alembic would rebuild the table for the key
        op.execute("ALTER TABLE case_categories ADD COLUMN parent_id INTEGER "
                   "CONSTRAINT fk_case_categories_parent_id_case_categories "
                   "REFERENCES case_categories (id)")
    else:
        op.add_column('case_categories', sa.Column(
            'parent_id', sa.Integer(),
            sa.ForeignKey('case_categories.id',
                          name='fk_case_categories_parent_id_case_categories'),
            nullable=True))
    op.add_column('case_categories', sa.Column('level', sa.Integer(), nullable=False,
                                               server_default='1'))
    op.add_column('case_categories', sa.Column('time_limit_hours', sa.Integer(), nullable=True))
    op.create_index('ix_case_categories_parent_id', 'case_categories', ['parent_id'])


def downgrade() -> None:
    op.drop_index('ix_case_categories_parent_id', 'case_categories')
    with op.batch_alter_table('case_categories', schema=None) as batch_op:
        batch_op.drop_column('time_limit_hours')
        batch_op.drop_column('level')
        batch_op.drop_column('parent_id')
