"""packed call spans: the spans of each of our own calls in one row (core/traces/packed.py)

Every call wrote five trace_spans rows, each with its primary-key and (user, start) index entries:
fifteen B-tree inserts a call, a large share of the group-commit writer's CPU and of the pages each
COMMIT writes. trace_call_spans holds a call's spans packed in one row (two index entries).

Existing rows stay where they are and are read as they are: trace_spans keeps the spans sent over
OTLP in any case, so every reader reads both tables, and copying the old calls' rows into packs
would rewrite a table of millions of rows at upgrade time for no difference in what reads return.

Revision ID: 0020_packed_call_spans
Revises: 0019_lean_call_indexes
Create Date: 2026-12-03 19:00:00.000000
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite


revision = '0020_packed_call_spans'
down_revision = '0019_lean_call_indexes'
branch_labels = None
depends_on = None

# A packed span's fields in their order in the pack (core/traces/packed.py at this revision); the
# pack is [resource attributes, [span, ...]].
_PACKED_FIELDS = (
    'span_id',
    'parent_span_id',
    'name',
    'kind',
    'start_unix_nano',
    'end_unix_nano',
    'status_code',
    'status_message',
    'attributes',
    'events',
    'links',
    'trace_state',
    'flags',
    'scope_name',
    'scope_version',
)
_JSON_FIELDS = ('attributes', 'events', 'links')


def upgrade() -> None:
    op.create_table('trace_call_spans',
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('end_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('last_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=False),
    sa.Column('span_count', sa.Integer(), nullable=False),
    sa.Column('spans', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_trace_call_spans_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'trace_id', 'span_id', name=op.f('pk_trace_call_spans'))
    )
    with op.batch_alter_table('trace_call_spans', schema=None) as batch_op:
        batch_op.create_index(
            'ix_trace_call_spans_user_last_start',
            ['user_id', 'last_start_unix_nano', 'span_count'],
            unique=False,
        )


def downgrade() -> None:
    """Calls' packed spans go back to trace_spans first, so a downgrade loses no trace."""
    bind = op.get_bind()
    packs = sa.table(
        'trace_call_spans',
        sa.column('user_id', sa.String()),
        sa.column('trace_id', sa.String()),
        sa.column('spans', sa.LargeBinary()),
    )
    columns = ('user_id', 'trace_id', *_PACKED_FIELDS, 'resource_attributes', 'source')
    spans = sa.table('trace_spans', *(sa.column(name) for name in columns))
    dialect = postgresql if bind.dialect.name == 'postgresql' else sqlite
    # A span stored both ways (sent over OTLP with our ids) keeps its trace_spans row.
    insert = dialect.insert(spans).on_conflict_do_nothing()
    packed_rows = bind.execute(sa.select(packs.c.user_id, packs.c.trace_id, packs.c.spans)).all()
    for user_id, trace_id, blob in packed_rows:
        resource, packed = orjson.loads(bytes(blob))
        common = {
            'user_id': user_id,
            'trace_id': trace_id,
            'resource_attributes': orjson.dumps(resource).decode(),
            'source': 'batchin',
        }
        rows = []
        for values in packed:
            span = dict(zip(_PACKED_FIELDS, values, strict=True))
            for name in _JSON_FIELDS:
                span[name] = orjson.dumps(span[name]).decode()
            rows.append(common | span)
        bind.execute(insert, rows)
    with op.batch_alter_table('trace_call_spans', schema=None) as batch_op:
        batch_op.drop_index('ix_trace_call_spans_user_last_start')

    op.drop_table('trace_call_spans')
