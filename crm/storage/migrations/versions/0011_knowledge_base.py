"""knowledge base: articles, spoken answers, their term index, "answered from article"

Revision ID: 0011_knowledge_base
Revises: 0010_recorded_events
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op

import crm.storage.models

revision = '0011_knowledge_base'
down_revision = '0010_recorded_events'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('knowledge_articles',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('category_code', sa.String(length=32), nullable=True),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=True),
    sa.Column('review_date', sa.Date(), nullable=False),
    sa.Column('ivr_key', sa.String(length=1), nullable=True),
    sa.Column('created_at', crm.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', crm.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], ondelete='SET NULL',
                            name='fk_knowledge_articles_department_id_departments'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('knowledge_articles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_knowledge_articles_category_code'),
                              ['category_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_knowledge_articles_department_id'),
                              ['department_id'], unique=False)
    op.create_table('knowledge_answers',
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=8), nullable=False),
    sa.Column('text', sa.String(length=1000), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['knowledge_articles.id'], ondelete='CASCADE',
                            name='fk_knowledge_answers_article_id_knowledge_articles'),
    sa.PrimaryKeyConstraint('article_id', 'language')
    )
    op.create_table('knowledge_terms',
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('term', sa.String(length=64), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['article_id'], ['knowledge_articles.id'], ondelete='CASCADE',
                            name='fk_knowledge_terms_article_id_knowledge_articles'),
    sa.PrimaryKeyConstraint('article_id', 'term')
    )
    op.create_index('ix_knowledge_terms_term', 'knowledge_terms', ['term'], unique=False)
    op.create_table('consultation_articles',
    sa.Column('consultation_id', sa.Integer(), nullable=False),
    sa.Column('article_id', sa.Integer(), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=True),
    sa.Column('marked_at', crm.storage.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['consultation_id'], ['consultations.id'], ondelete='CASCADE',
                            name='fk_consultation_articles_consultation_id_consultations'),
    sa.ForeignKeyConstraint(['article_id'], ['knowledge_articles.id'], ondelete='CASCADE',
                            name='fk_consultation_articles_article_id_knowledge_articles'),
    sa.ForeignKeyConstraint(['agent_id'], ['agents.id'], ondelete='SET NULL',
                            name='fk_consultation_articles_agent_id_agents'),
    sa.PrimaryKeyConstraint('consultation_id', 'article_id')
    )
    op.create_index(op.f('ix_consultation_articles_article_id'), 'consultation_articles',
                    ['article_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_consultation_articles_article_id'),
                  table_name='consultation_articles')
    op.drop_table('consultation_articles')
    op.drop_index('ix_knowledge_terms_term', table_name='knowledge_terms')
    op.drop_table('knowledge_terms')
    op.drop_table('knowledge_answers')
    with op.batch_alter_table('knowledge_articles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_knowledge_articles_department_id'))
        batch_op.drop_index(batch_op.f('ix_knowledge_articles_category_code'))
    op.drop_table('knowledge_articles')
