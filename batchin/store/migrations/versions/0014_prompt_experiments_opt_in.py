"""prompt_registries.experiments_enabled: prompt experiments are opt-in per registry

Every existing registry starts with experiments off, and the sampled conversations kept so far are
deleted: from now on they are kept only for registries whose owner opted in. Downgrading cannot
bring the samples back.

Revision ID: 0014_prompt_experiments_opt_in
Revises: 0013_storage_retention
Create Date: 2026-12-03 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0014_prompt_experiments_opt_in'
down_revision = '0013_storage_retention'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN with a constant default: no table rebuild on SQLite.
    op.add_column(
        'prompt_registries',
        sa.Column('experiments_enabled', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute(sa.text('DELETE FROM prompt_samples'))


def downgrade() -> None:
    with op.batch_alter_table('prompt_registries', schema=None) as batch_op:
        batch_op.drop_column('experiments_enabled')
