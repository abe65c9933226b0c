"""lean call indexes: a paid call's rows carry only the indexes a query reads

The usage logs' request id index served no query (usage is listed by user and time; a request's
log is found through its user), and the reservations' (status, created_at) index kept one entry for
every reservation ever closed although every reader asks only for `held` ones (the sweep, video
job recovery and purge): it becomes a partial index of the held reservations, which stays as
small as the calls in flight. bench/profiles/indexes_rows6.txt lists each index and its queries.

Revision ID: 0019_lean_call_indexes
Revises: 0018_receipts_by_user
Create Date: 2026-12-03 17:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0019_lean_call_indexes'
down_revision = '0018_receipts_by_user'
branch_labels = None
depends_on = None

_HELD = "status = 'held'"


def upgrade() -> None:
    op.drop_index('ix_usage_logs_request_id', table_name='usage_logs')
    op.drop_index('ix_reservations_status_created_at', table_name='reservations')
    op.create_index(
        'ix_reservations_held',
        'reservations',
        ['created_at'],
        unique=False,
        sqlite_where=sa.text(_HELD),
        postgresql_where=sa.text(_HELD),
    )


def downgrade() -> None:
    op.drop_index('ix_reservations_held', table_name='reservations')
    op.create_index(
        'ix_reservations_status_created_at', 'reservations', ['status', 'created_at'], unique=False
    )
    op.create_index('ix_usage_logs_request_id', 'usage_logs', ['request_id'], unique=False)
