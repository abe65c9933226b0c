"""video_jobs.origin: the base URL a job was created through, for its output_url when no request
names one (an MCP tool call)

Revision ID: 0011_video_job_origin
Revises: 0010_reservation_renewals
Create Date: 2026-12-02 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0011_video_job_origin'
down_revision = '0010_reservation_renewals'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: jobs made before it fall back to the server's own base URL.
    op.add_column('video_jobs', sa.Column('origin', sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('video_jobs', schema=None) as batch_op:
        batch_op.drop_column('origin')
