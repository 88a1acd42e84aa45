"""a case is reminded once per kind and deadline, even when two senders race (the service's
timer, the console's button, the CLI from cron)

Revision ID: 0015_reminder_once
Revises: 0014_agent_locale
Create Date: 2026-12-06
"""
from alembic import op

revision = '0015_reminder_once'
down_revision = '0014_agent_locale'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('case_reminders', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_case_reminders_once',
                                          ['case_id', 'kind', 'deadline'])


def downgrade() -> None:
    with op.batch_alter_table('case_reminders', schema=None) as batch_op:
        batch_op.drop_constraint('uq_case_reminders_once', type_='unique')
