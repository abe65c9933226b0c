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

_CHECK = "currency IN ('USD', 'CNY')"


def upgrade() -> None:
    # The server default fills every existing row with USD in the same statement. On SQLite the
    # column and its check are one ALTER TABLE ADD COLUMN: a batch "recreate" of users would drop
    # the old table, and with foreign keys on that cascades to every key, usage log and top-up.
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            "ALTER TABLE users ADD COLUMN currency VARCHAR(3) DEFAULT 'USD' NOT NULL "
            f"CONSTRAINT ck_users_currency_known CHECK ({_CHECK})"
        )
        return
    op.add_column('users', sa.Column('currency', sa.String(length=3), nullable=False, server_default='USD'))
    op.create_check_constraint(op.f('ck_users_currency_known'), 'users', _CHECK)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'sqlite':
        op.execute('ALTER TABLE users DROP COLUMN currency')  # SQLite >= 3.35; no table rebuild
        return
    op.drop_constraint(op.f('ck_users_currency_known'), 'users', type_='check')
    op.drop_column('users', 'currency')
