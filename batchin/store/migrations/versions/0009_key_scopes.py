"""key scopes: each API key's scopes and models; existing keys keep every scope and every model

Revision ID: 0009_key_scopes
Revises: 0008_prompts
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op


revision = '0009_key_scopes'
down_revision = '0008_prompts'
branch_labels = None
depends_on = None

# Frozen here, not imported: a migration must mean the same thing after the code moves on.
_EVERY_SCOPE = ["inference", "account:read", "keys:write", "billing", "batches", "audit:write", "prompts:write"]


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild on SQLite: rebuilding api_keys would cascade-delete key_spend).
    op.add_column('api_keys', sa.Column('scopes', sa.Text(), server_default='[]', nullable=False))
    op.add_column('api_keys', sa.Column('models', sa.Text(), server_default='[]', nullable=False))
    # Keys made before scopes existed could do everything; they still can, so nothing breaks.
    op.execute(
        sa.text("UPDATE api_keys SET scopes = :scopes").bindparams(scopes=json.dumps(_EVERY_SCOPE))
    )


def downgrade() -> None:
    op.drop_column('api_keys', 'models')
    op.drop_column('api_keys', 'scopes')
