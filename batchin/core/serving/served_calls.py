"""The receipt and the trace of a served call that is not a text generation (embeddings, speech,
transcriptions, translations, images): one helper for all of them, so every modality is signed,
logged and traced the same way without copying the text path per kind.

    async with served.call(ctx, model_id=entry.id, endpoint="embeddings", input=raw) as call:
        pool = await flow.admit(ctx, entry)
        async with metering.call(...) as metered, pool.slot(priority) as queued:
            call.admitted(queued, metered)
            ...engine...
            call.engine_done()
        call.produced(output_bytes, units=..., unit=...)

When the block ends with an output, the audit record (attestation `served`, SHA-256 of the input
and output bytes) is signed and appended to the transparency log, and its X-VaaS-* headers are put
on the call context, which both surfaces render (HTTP headers, MCP `_meta` receipt). Every call
that reached admission leaves a stored trace (call → admission → engine spans), refusals too.
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
from batchin.errors import BatchInError

__all__ = ["ServedCall", "ServedCalls"]

log = logging.getLogger("batchin.served")


@dataclass(slots=True)
class ServedCall:
    """One call in flight; its fields also serve as the trace builder's `CallTimings`."""

    queued_seconds: float = 0.0
    admitted_at: float = 0.0  # monotonic; 0.0 until the engine slot is granted
    first_token_at: float | None = None  # no token stream: the engine span has no children
    finished_at: float | None = None
    output: bytes | None = None
    usage: AuditUsage = field(default_factory=AuditUsage)
    metered: MeteredCall | None = None
    # X-VaaS-* of the record's opening statement: what a streamed answer (sent before its output
    # exists) carries, as text streams do; the signed record replaces them once sealed.
    opening_headers: dict[str, str] = field(default_factory=dict)

    def admitted(self, queued_seconds: float, metered: MeteredCall | None = None) -> None:
        """The engine slot is granted: the queue span ends, the engine span begins."""
        self.queued_seconds, self.admitted_at, self.metered = queued_seconds, time.monotonic(), metered

    def engine_done(self) -> None:
        self.finished_at = time.monotonic()

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
        self.output = output
        self.usage = AuditUsage(input_tokens, output_tokens, units, unit)


class ServedCalls:
    def __init__(self, audit: AuditService, traces: TraceService) -> None:
        self._audit = audit
        self._traces = traces

    @contextlib.asynccontextmanager
    async def call(
        self, ctx: CallContext, *, model_id: str, endpoint: str, input: bytes
    ) -> AsyncIterator[ServedCall]:
        pending = self._audit.begin_call(ctx, model_id=model_id, input_text=input)
        call = ServedCall(opening_headers=pending.response_headers())
        status = "failed"
        record_id: str | None = None
        try:
            yield call
            status = "succeeded"
        except (asyncio.CancelledError, ClientGone):
            status = "cancelled"
            raise
        except BatchInError as exc:
            status = "refused" if exc.status in (402, 429) else "failed"
            raise
        finally:
            if status == "succeeded" and call.output is not None:
                record_id = await self._seal(ctx, pending, call.output, call.usage)
            self._traces.record_generation(
                ctx,
                endpoint=endpoint,
                model_id=model_id,
                timings=call,
                status=status,
                route_id=pending.route_id,
                provider=pending.provider,
                record_id=record_id,
                prompt_tokens=call.usage.input_tokens,
                completion_tokens=call.usage.output_tokens,
                cost_units=(call.metered.charged_units or 0) if call.metered else 0,
            )

    async def _seal(
        self, ctx: CallContext, pending: PendingRecord, output: bytes, usage: AuditUsage
    ) -> str | None:
        try:
            receipt = await asyncio.shield(self._audit.finish(pending, output_text=output, usage=usage))
        except Exception:
            # The answer stands without its receipt; the operator must hear about it.
            log.exception("audit record %s could not be written", pending.record_id)
            return None
        ctx.receipt_headers = receipt.response_headers()
        return receipt.record_id
