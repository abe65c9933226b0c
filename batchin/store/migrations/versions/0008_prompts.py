"""prompts: registries, versions, signed label moves, sampled runs, experiments and regressions

Revision ID: 0008_prompts
Revises: 0007_webhooks
Create Date: 2026-11-26 12:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008_prompts'
down_revision = '0007_webhooks'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prompt_experiments',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=True),
    sa.Column('registry_id', sa.String(length=100), nullable=False),
    sa.Column('baseline_version_id', sa.String(length=200), nullable=False),
    sa.Column('candidate_version_id', sa.String(length=200), nullable=False),
    sa.Column('judge', sa.String(length=32), nullable=False),
    sa.Column('sample_size', sa.Integer(), nullable=False),
    sa.Column('trigger', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('promotion_status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('pass_rate', sa.Float(), nullable=True),
    sa.Column('claimed_by', sa.String(length=64), nullable=True),
    sa.Column('lease_until', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prompt_experiments_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_experiments'))
    )
    with op.batch_alter_table('prompt_experiments', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_experiments_status', ['status'], unique=False)
        batch_op.create_index('ix_prompt_experiments_user_created', ['user_id', 'created_at'], unique=False)

    op.create_table('prompt_label_moves',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('registry_id', sa.String(length=100), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prompt_label_moves_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_label_moves'))
    )
    with op.batch_alter_table('prompt_label_moves', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_label_moves_user_registry', ['user_id', 'registry_id', 'created_at'], unique=False)

    op.create_table('prompt_registries',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('registry_id', sa.String(length=100), nullable=False),
    sa.Column('display_name', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('promoted_version_id', sa.String(length=200), nullable=True),
    sa.Column('latest_version_id', sa.String(length=200), nullable=True),
    sa.Column('total_runs', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prompt_registries_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'registry_id', name=op.f('pk_prompt_registries'))
    )
    with op.batch_alter_table('prompt_registries', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_registries_user_created', ['user_id', 'created_at'], unique=False)

    op.create_table('prompt_samples',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('version_id', sa.String(length=200), nullable=False),
    sa.Column('model_id', sa.String(length=200), nullable=False),
    sa.Column('messages', sa.Text(), nullable=False),
    sa.Column('output_text', sa.Text(), nullable=False),
    sa.Column('max_tokens', sa.Integer(), nullable=False),
    sa.Column('temperature', sa.Float(), nullable=False),
    sa.Column('latency_ms', sa.Integer(), nullable=False),
    sa.Column('cost_units', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prompt_samples_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_samples'))
    )
    with op.batch_alter_table('prompt_samples', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_samples_user_version', ['user_id', 'version_id', 'id'], unique=False)

    op.create_table('prompt_versions',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('version_id', sa.String(length=200), nullable=False),
    sa.Column('registry_id', sa.String(length=100), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('template', sa.Text(), nullable=True),
    sa.Column('variables', sa.Text(), nullable=False),
    sa.Column('total_runs', sa.BigInteger(), nullable=False),
    sa.Column('key_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prompt_versions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'version_id', name=op.f('pk_prompt_versions'))
    )
    with op.batch_alter_table('prompt_versions', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_versions_user_registry', ['user_id', 'registry_id', 'created_at'], unique=False)

    op.create_table('prompt_regressions',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('experiment_id', sa.String(length=64), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('registry_id', sa.String(length=100), nullable=False),
    sa.Column('baseline_version_id', sa.String(length=200), nullable=False),
    sa.Column('candidate_version_id', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('judge', sa.String(length=32), nullable=False),
    sa.Column('sample_count', sa.Integer(), nullable=False),
    sa.Column('pass_count', sa.Integer(), nullable=False),
    sa.Column('fail_count', sa.Integer(), nullable=False),
    sa.Column('avg_similarity', sa.Float(), nullable=False),
    sa.Column('baseline_avg_latency_ms', sa.Integer(), nullable=False),
    sa.Column('candidate_avg_latency_ms', sa.Integer(), nullable=False),
    sa.Column('baseline_avg_cost_units', sa.BigInteger(), nullable=False),
    sa.Column('candidate_avg_cost_units', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['experiment_id'], ['prompt_experiments.id'], name=op.f('fk_prompt_regressions_experiment_id_prompt_experiments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_prompt_regressions_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt_regressions')),
    sa.UniqueConstraint('experiment_id', name=op.f('uq_prompt_regressions_experiment_id'))
    )
    with op.batch_alter_table('prompt_regressions', schema=None) as batch_op:
        batch_op.create_index('ix_prompt_regressions_user_created', ['user_id', 'created_at'], unique=False)

    op.create_table('prompt_replays',
    sa.Column('experiment_id', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.String(length=200), nullable=False),
    sa.Column('messages', sa.Text(), nullable=False),
    sa.Column('max_tokens', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('baseline_recorded', sa.Boolean(), nullable=False),
    sa.Column('baseline_output', sa.Text(), nullable=True),
    sa.Column('baseline_latency_ms', sa.Integer(), nullable=True),
    sa.Column('baseline_cost_units', sa.BigInteger(), nullable=True),
    sa.Column('candidate_output', sa.Text(), nullable=True),
    sa.Column('candidate_latency_ms', sa.Integer(), nullable=True),
    sa.Column('candidate_cost_units', sa.BigInteger(), nullable=True),
    sa.Column('similarity', sa.Float(), nullable=True),
    sa.Column('passed', sa.Boolean(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['prompt_experiments.id'], name=op.f('fk_prompt_replays_experiment_id_prompt_experiments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('experiment_id', 'position', name=op.f('pk_prompt_replays'))
    )


def downgrade() -> None:
    op.drop_table('prompt_replays')
    with op.batch_alter_table('prompt_regressions', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_regressions_user_created')

    op.drop_table('prompt_regressions')
    with op.batch_alter_table('prompt_versions', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_versions_user_registry')

    op.drop_table('prompt_versions')
    with op.batch_alter_table('prompt_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_samples_user_version')

    op.drop_table('prompt_samples')
    with op.batch_alter_table('prompt_registries', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_registries_user_created')

    op.drop_table('prompt_registries')
    with op.batch_alter_table('prompt_label_moves', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_label_moves_user_registry')

    op.drop_table('prompt_label_moves')
    with op.batch_alter_table('prompt_experiments', schema=None) as batch_op:
        batch_op.drop_index('ix_prompt_experiments_user_created')
        batch_op.drop_index('ix_prompt_experiments_status')

    op.drop_table('prompt_experiments')
