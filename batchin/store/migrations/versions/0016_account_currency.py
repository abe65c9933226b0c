"""users.currency: the account's currency (USD or CNY), fixed when it is opened; existing accounts
are USD, the only currency before it

Revision ID: 0016_account_currency
Revises: 0015_video_job_receipts
Create Date: 2026-12-03 04:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0016_account_currency'
down_revision = '0015_video_job_receipts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The server default fills every existing row with USD in the same statement.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('currency', sa.String(length=3), nullable=False, server_default='USD'))
        batch_op.create_check_constraint(op.f('ck_users_currency_known'), "currency IN ('USD', 'CNY')")


def downgrade() -> None:
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_users_currency_known'), type_='check')
        batch_op.drop_column('currency')
