"""key regions: the entry regions each API key may use; existing keys keep every region

Revision ID: 0012_key_regions
Revises: 0011_video_job_origin
Create Date: 2026-12-02 22:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0012_key_regions'
down_revision = '0011_video_job_origin'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild on SQLite: rebuilding api_keys would cascade-delete key_spend).
    # The default '[]' is every region, what keys made before regions existed could already use.
    op.add_column('api_keys', sa.Column('regions', sa.Text(), server_default='[]', nullable=False))


def downgrade() -> None:
    op.drop_column('api_keys', 'regions')
