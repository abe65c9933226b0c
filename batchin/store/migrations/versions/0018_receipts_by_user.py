"""receipts by user: an index for listing one user's audit records newest first (the console)

Revision ID: 0018_receipts_by_user
Revises: 0017_console_accounts
Create Date: 2026-12-03 07:30:00.000000
"""

from __future__ import annotations

from alembic import op


revision = '0018_receipts_by_user'
down_revision = '0017_console_accounts'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        'ix_vaas_records_user_created', 'vaas_records', ['user_id', 'created_at', 'id'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_vaas_records_user_created', table_name='vaas_records')
