"""reservations.renewed_at: the holder's last sign of life, so the sweeper spares live calls

Revision ID: 0010_reservation_renewals
Revises: 0009_key_scopes
Create Date: 2026-12-01 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0010_reservation_renewals'
down_revision = '0009_key_scopes'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, so adding it rewrites no table; a held row's creation was its last sign of life.
    op.add_column('reservations', sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE reservations SET renewed_at = created_at WHERE status = 'held'")


def downgrade() -> None:
    with op.batch_alter_table('reservations', schema=None) as batch_op:
        batch_op.drop_column('renewed_at')
