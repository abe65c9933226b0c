"""storage and retention: per-user stored bytes (backfilled from files), the maintenance job row,
and created_at indexes for the retention purge

Revision ID: 0013_storage_retention
Revises: 0012_key_regions
Create Date: 2026-12-04 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0013_storage_retention'
down_revision = '0012_key_regions'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('storage_usage',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_storage_usage_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_storage_usage'))
    )
    # Files stored before the counter existed count from the start.
    op.execute(
        'INSERT INTO storage_usage (user_id, bytes) SELECT user_id, SUM(bytes) FROM files GROUP BY user_id'
    )
    op.create_table('maintenance_jobs',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('stats', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_maintenance_jobs'))
    )
    op.create_index('ix_files_created', 'files', ['created_at'], unique=False)
    op.create_index('ix_trace_summaries_created', 'trace_summaries', ['created_at'], unique=False)
    op.create_index('ix_prompt_samples_created', 'prompt_samples', ['created_at'], unique=False)
    op.create_index(
        'ix_webhook_deliveries_status_completed', 'webhook_deliveries', ['status', 'completed_at'], unique=False
    )


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_status_completed', table_name='webhook_deliveries')
    op.drop_index('ix_prompt_samples_created', table_name='prompt_samples')
    op.drop_index('ix_trace_summaries_created', table_name='trace_summaries')
    op.drop_index('ix_files_created', table_name='files')
    op.drop_table('maintenance_jobs')
    op.drop_table('storage_usage')
