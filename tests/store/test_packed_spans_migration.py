"""Migration 0020: spans stored a row each before it read as they did; a downgrade unpacks the calls'
packed spans into trace_spans, so no trace loses a span either way."""

from __future__ import annotations

from alembic import command
from sqlalchemy import select

from batchin.core.clock import utcnow
from batchin.core.traces.span_rows import span_from_row
from batchin.core.traces.store import TraceRecord, TraceStore
from batchin.services import Services
from batchin.store.migrate import alembic_config, upgrade
from batchin.store.tables import trace_spans
from tests.conftest import MakeUser
from tests.core.traces.test_packed import spans_of_a_call
from tests.core.traces.test_traces import context, record


async def downgrade_to_0019(services: Services) -> None:
    async with services.database.write() as conn:
        await conn.run_sync(lambda c: command.downgrade(alembic_config(c), "0019_lean_call_indexes"))


async def test_a_downgrade_unpacks_every_call_into_span_rows(services: Services, make_user: MakeUser) -> None:
    user = await make_user()
    ctx = await context(services, user)
    record(services, ctx)
    before = await services.traces.get_trace(user.id, ctx.trace.trace_id)
    exported = await services.traces._store.spans(user.id, trace_id=ctx.trace.trace_id, limit=100)
    await downgrade_to_0019(services)
    async with services.database.read() as conn:
        rows = (await conn.execute(select(trace_spans).where(trace_spans.c.user_id == user.id))).all()
    assert sorted((span_from_row(r) for r in rows), key=lambda s: s.span_id) == sorted(
        exported, key=lambda s: s.span_id
    )
    await upgrade(services.database)
    assert await services.traces.get_trace(user.id, ctx.trace.trace_id) == before


async def test_a_call_stored_a_span_a_row_reads_as_one_stored_packed(
    services: Services, make_user: MakeUser
) -> None:
    """The same call's spans, one user's written as before 0020 (a row each), the other's packed."""
    before_0020, packed = await make_user(), await make_user()
    spans = spans_of_a_call()
    store = TraceStore(services.database)
    for user in (before_0020, packed):
        summary = TraceRecord(spans[0].trace_id, user.id, "batchin", utcnow(), model_id="m")
        if user is before_0020:
            await store.write([summary], [(user.id, span) for span in spans])
        else:
            await store.write([summary], [], [(user.id, spans)])
    old = await services.traces.get_trace(before_0020.id, spans[0].trace_id)
    new = await services.traces.get_trace(packed.id, spans[0].trace_id)
    assert old.model_dump(exclude={"created_at"}) == new.model_dump(exclude={"created_at"})
    assert sorted(s.span_id for s in new.spans) == sorted(s.span_id for s in spans)
    for limit in (1, 3, 100):
        assert await store.spans(before_0020.id, trace_id=None, limit=limit) == await store.spans(
            packed.id, trace_id=None, limit=limit
        )
