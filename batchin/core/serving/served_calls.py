"""The receipt and the trace of a served call that is not a text generation (embeddings, speech,
transcriptions, translations, images, video jobs): one helper for all of them, so every modality is
signed, logged and traced the same way without copying the text path per kind.

    async with served.call(ctx, model_id=entry.id, endpoint="embeddings", input=raw) as call:
        pool = await flow.admit(ctx, entry)
        async with metering.call(...) as metered, pool.slot(priority) as queued:
            call.admitted(queued, metered)
            ...engine...
            call.engine_done()
            ...encode the output...
        call.produced(output_bytes, units=..., unit=...)

When the block ends with an output, the audit record (attestation `served`, SHA-256 of the input
and output bytes) is signed and appended to the transparency log, and its X-VaaS-* headers are put
on the call context, which both surfaces render (HTTP headers, MCP `_meta` receipt). A caller that
must name the record before the block ends (a video job marks itself completed with it) calls
`seal(call)` inside the block. Every call that reached admission leaves a stored trace (call →
admission → engine → encode spans), refusals too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from batchin.core.audit.records import AuditUsage, PendingRecord
from batchin.core.audit.service import AuditService
from batchin.core.billing.metering import ClientGone, MeteredCall
from batchin.core.context import CallContext
from batchin.core.traces.service import TraceService
from batchin.errors import BatchInError, StorageQuotaExceeded

__all__ = ["ServedCall", "ServedCalls"]

log = logging.getLogger("batchin.served")


@dataclass(slots=True)
class ServedCall:
    """One call in flight; its fields also serve as the trace builder's `CallTimings`."""

    ctx: CallContext = field(repr=False)
    pending: PendingRecord = field(repr=False)
    queued_seconds: float = 0.0
    admitted_at: float = 0.0  # monotonic; 0.0 until the engine slot is granted
    first_token_at: float | None = None  # no token stream: the engine span has no children
    engine_done_at: float | None = None  # the engine returned; encoding the output follows
    finished_at: float | None = None  # the output is ready for the caller
    output: bytes | None = None
    usage: AuditUsage = field(default_factory=AuditUsage)
    metered: MeteredCall | None = None
    cost_units: int | None = None  # a call no MeteredCall bills here (a video job) says its cost
    record_id: str | None = None

    def admitted(self, queued_seconds: float, metered: MeteredCall | None = None) -> None:
        """The engine slot is granted: the queue span ends, the engine span begins."""
        self.queued_seconds, self.admitted_at, self.metered = queued_seconds, time.monotonic(), metered

    def engine_done(self) -> None:
        """The engine has returned: the engine span ends, the encode span begins."""
        self.engine_done_at = time.monotonic()

    def produced(
        self,
        output: bytes,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        units: float = 0.0,
        unit: str = "tokens",
    ) -> None:
        """The exact bytes the caller gets (or their canonical form): what the receipt hashes."""
        self.finished_at = time.monotonic()
        self.output = output
        self.usage = AuditUsage(input_tokens, output_tokens, units, unit)

    @property
    def opening_headers(self) -> dict[str, str]:
        """X-VaaS-* of the record's opening statement: what a streamed answer (sent before its
        output exists) carries, as text streams do; the signed record replaces them once sealed."""
        return self.pending.response_headers()

    def charged_units(self) -> int:
        if self.metered is not None:
            return self.metered.charged_units or 0
        return self.cost_units or 0


class ServedCalls:
    def __init__(self, audit: AuditService, traces: TraceService) -> None:
        self._audit = audit
        self._traces = traces

    @contextlib.asynccontextmanager
    async def call(
        self,
        ctx: CallContext,
        *,
        model_id: str,
        endpoint: str,
        input: bytes,
        trace_cancelled: bool = True,
    ) -> AsyncIterator[ServedCall]:
        """`trace_cancelled=False`: a cancelled call leaves no trace (a video job handed back at
        shutdown runs again under the same trace and span ids; its real ending is the one to keep)."""
        pending = self._audit.begin_call(ctx, model_id=model_id, input_text=input)
        call = ServedCall(ctx, pending)
        status = "failed"
        try:
            yield call
            status = "succeeded"
        except (asyncio.CancelledError, ClientGone):
            status = "cancelled"
            raise
        except BatchInError as exc:
            refused = exc.status in (402, 429) or isinstance(exc, StorageQuotaExceeded)
            status = "refused" if refused else "failed"
            raise
        finally:
            if status == "succeeded":
                await self.seal(call)
            if status != "cancelled" or trace_cancelled:
                self._traces.record_generation(
                    ctx,
                    endpoint=endpoint,
                    model_id=model_id,
                    timings=call,
                    engine_done_at=call.engine_done_at,
                    status=status,
                    route_id=pending.route_id,
                    provider=pending.provider,
                    record_id=call.record_id,
                    prompt_tokens=call.usage.input_tokens,
                    completion_tokens=call.usage.output_tokens,
                    cost_units=call.charged_units(),
                )

    async def seal(self, call: ServedCall) -> str | None:
        """Sign and log the record of the call's output (once; None when there is no output yet or
        the record could not be written), and put its X-VaaS-* headers on the call context."""
        if call.output is None or call.pending.finished:  # nothing to sign, or signed (or tried) once
            return call.record_id
        try:
            # No shield of its own: `finish` signs and queues the append before its first await,
            # and its wait for the commit is shielded, so a cancel here only ends the wait.
            receipt = await self._audit.finish(call.pending, output_text=call.output, usage=call.usage)
        except Exception:
            # The answer stands without its receipt; the operator must hear about it.
            log.exception("audit record %s could not be written", call.pending.record_id)
            return None
        call.ctx.receipt_headers = receipt.response_headers()
        call.record_id = receipt.record_id
        return receipt.record_id

    async def receipt_headers(self, record_id: str) -> dict[str, str]:
        """The X-VaaS-* headers of a record signed earlier (a finished video job's)."""
        return await self._audit.receipt_headers(record_id)
