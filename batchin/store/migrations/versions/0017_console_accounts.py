"""console accounts: users' password hash, verified flag, entry and pending verification token;
console sessions; signup invites

Revision ID: 0017_console_accounts
Revises: 0016_account_currency
Create Date: 2026-12-03 04:15:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0017_console_accounts'
down_revision = '0016_account_currency'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs and a unique index, never a batch "recreate" of users: on SQLite that drops the
    # old table, and with foreign keys on the drop cascades to every key, usage log and top-up.
    op.add_column('users', sa.Column('password_hash', sa.String(length=255), nullable=True))
    # Every user made before this (by the operator's CLI) counts as verified.
    op.add_column('users', sa.Column('email_verified', sa.Boolean(), nullable=False, server_default=sa.true()))
    op.add_column('users', sa.Column('entry', sa.String(length=16), nullable=False, server_default='global'))
    op.add_column('users', sa.Column('verify_token_hash', sa.String(length=64), nullable=True))
    op.create_index('ix_users_verify_token_hash', 'users', ['verify_token_hash'], unique=True)
    op.create_table(
        'console_sessions',
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.String(length=36), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_console_sessions_user_id_users', ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_hash', name='pk_console_sessions'),
    )
    op.create_index('ix_console_sessions_user_id', 'console_sessions', ['user_id'])
    op.create_table(
        'signup_invites',
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('note', sa.String(length=200), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_by', sa.String(length=36), nullable=True),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['used_by'], ['users.id'], name='fk_signup_invites_used_by_users', ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('code_hash', name='pk_signup_invites'),
    )


def downgrade() -> None:
    op.drop_table('signup_invites')
    op.drop_index('ix_console_sessions_user_id', table_name='console_sessions')
    op.drop_table('console_sessions')
    op.drop_index('ix_users_verify_token_hash', table_name='users')
    for name in ('verify_token_hash', 'entry', 'email_verified', 'password_hash'):
        # SQLite >= 3.35 drops a column in place (no table rebuild, nothing cascades).
        op.execute(f'ALTER TABLE users DROP COLUMN {name}')
