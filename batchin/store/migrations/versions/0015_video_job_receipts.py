"""video_jobs: the submitting call's trace context, run id, prompt version and region, so the job's
receipt and trace join that call's; and the audit record signed when the job completed

Revision ID: 0015_video_job_receipts
Revises: 0014_prompt_experiments_opt_in
Create Date: 2026-12-03 00:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0015_video_job_receipts'
down_revision = '0014_prompt_experiments_opt_in'
branch_labels = None
depends_on = None

_COLUMNS = ('traceparent', 'parent_span_id', 'run_id', 'prompt_version', 'region', 'record_id')


def upgrade() -> None:
    # Nullable: jobs made before it complete under a trace of their own, as before, with a receipt.
    op.add_column('video_jobs', sa.Column('traceparent', sa.String(length=55), nullable=True))
    op.add_column('video_jobs', sa.Column('parent_span_id', sa.String(length=16), nullable=True))
    op.add_column('video_jobs', sa.Column('run_id', sa.String(length=64), nullable=True))
    op.add_column('video_jobs', sa.Column('prompt_version', sa.String(length=200), nullable=True))
    op.add_column('video_jobs', sa.Column('region', sa.String(length=64), nullable=True))
    op.add_column('video_jobs', sa.Column('record_id', sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('video_jobs', schema=None) as batch_op:
        for name in reversed(_COLUMNS):
            batch_op.drop_column(name)
