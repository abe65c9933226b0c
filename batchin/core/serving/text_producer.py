"""A text call's producer: the task that runs one admitted generation from start to record.

It takes the call's money (reservation → settlement), its admission slot, the engine's deltas into
the generation's buffer, then the call's signed record, whatever becomes of the call; its
prompt-registry sample, metrics and trace follow the answer (the generation's epilogue).
`InferenceService` prepares the call and starts this task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from functools import partial

from batchin.core.audit.records import AuditReceipt, AuditUsage, PendingRecord
from batchin.core.audit.service import AuditService
from batchin.core.billing.metering import ClientGone, MeteredCall, MeteringService
from batchin.core.billing.money import cost_per_million
from batchin.core.context import CallContext
from batchin.core.prompts.service import PromptRun, PromptService
from batchin.core.serving.admission import AdmissionPool, Priority
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.generation import TextGeneration
from batchin.core.serving.metrics import InferenceMetrics
from batchin.core.serving.model_lookup import prices_for
from batchin.core.traces.service import TraceService
from batchin.errors import BatchInError, Preempted
from batchin.models.base import PreparedPrompt, TextRunner
from batchin.models.catalog import CatalogEntry, Pricing

log = logging.getLogger("batchin.inference")

# Remote upstreams count prompt tokens themselves; reserve for a generous over-estimate of ours.
_ESTIMATE_HEADROOM = 1.5


@dataclass(slots=True)
class StartedText:
    generation: TextGeneration
    entry: CatalogEntry
    prompt_tokens: int
    audit: PendingRecord
    receipt: AuditReceipt | None = None  # set when the call's audit record is signed and logged
    prompt: PromptRun | None = None  # the prompt version it ran, recorded when it succeeds
    cost_units: int = 0  # what it was charged, once settled

    def audit_headers(self) -> dict[str, str]:
        """X-VaaS-*: the final record's signature once it exists (whole answers), else the opening
        statement's (streams, whose headers leave before the output exists)."""
        return (self.receipt or self.audit).response_headers()


def text_cost(pricing: Pricing, prompt_tokens: int, completion_tokens: int) -> int:
    return cost_per_million(prompt_tokens, pricing.input_per_1m or 0) + cost_per_million(
        completion_tokens, pricing.output_per_1m or 0
    )


def max_text_cost(pricing: Pricing, prepared: PreparedPrompt, choices: int) -> int:
    """What a call is reserved for: its whole prompt and every choice's token limit."""
    prompt = (
        prepared.prompt_tokens if prepared.exact else int(prepared.prompt_tokens * _ESTIMATE_HEADROOM) + 16
    )
    return text_cost(pricing, prompt, prepared.sampling.max_tokens * choices)


class TextProducer:
    def __init__(
        self,
        metering: MeteringService,
        flow: FlowPolicy,
        metrics: InferenceMetrics,
        audit: AuditService,
        traces: TraceService,
        prompts: PromptService | None,
    ) -> None:
        self._metering = metering
        self._flow = flow
        self._metrics = metrics
        self._audit = audit
        self._traces = traces
        self._prompts = prompts

    async def produce(
        self,
        started: StartedText,
        admitted: asyncio.Future[None],
        ctx: CallContext,
        runner: TextRunner,
        prepared: PreparedPrompt,
        endpoint: str,
        priority: Priority,
        choices: int,
    ) -> None:
        gen, entry = started.generation, started.entry
        pricing = prices_for(entry, ctx.principal)  # the account's currency
        status = "failed"
        metered: MeteredCall | None = None
        sealing: Awaitable[AuditReceipt] | None = None
        try:
            # Cheap refusals (region, lane limits) first; then money; then a slot, so a call refused
            # for money never holds engine capacity.
            pool: AdmissionPool = await self._flow.admit(ctx, entry)
            async with (
                self._metering.call(
                    ctx,
                    model=entry.id,
                    endpoint=endpoint,
                    max_cost_units=max_text_cost(pricing, prepared, choices),
                ) as call,
                # A batch task's fill call gives way to higher priorities: cancelled, it charges
                # nothing (metering releases it) and the task runs again.
                pool.slot(priority, preemptible=ctx.billing is not None) as queued_seconds,
            ):
                metered = call
                call.begin()
                gen.admitted(admitted, queued_seconds)
                # The priority goes with the call to its engine: where several API processes share
                # one (`serve --workers`), the engine's own gate orders and preempts by it. An
                # interactive call's are the prompt's defaults: no copy (replace() costs ~1.7 µs).
                ranked = _ranked(prepared, int(priority), preemptible=ctx.billing is not None)
                await self._pump(gen, call, pricing, runner, ranked, choices)
                gen.stats.finished_at = time.monotonic()
                # The record is final: sign and queue it now, so that its log append joins the
                # settlement's group commit (one writer hand-off for both, not one after the other).
                sealing = self._seal(started)
            status = "succeeded"
        except (asyncio.CancelledError, ClientGone, Preempted):
            status = "cancelled"
            raise
        except BatchInError as exc:
            status = "refused" if exc.status in (402, 429) else "failed"
            raise
        finally:
            if sealing is None and gen.stats.admitted_at:  # the engine ran: it gets its record
                sealing = self._seal(started)
            if sealing is not None:
                await self._sealed(started, sealing)
            started.cost_units = (metered.charged_units or 0) if metered else 0
            # The answer waits for its settlement and receipt only; what the call records once it is
            # over follows it (BufferedStream.set_epilogue).
            gen.set_epilogue(partial(self._record, started, ctx, endpoint, status))

    def _record(self, started: StartedText, ctx: CallContext, endpoint: str, status: str) -> None:
        """A finished call's prompt-registry sample, metrics and trace."""
        gen, model_id = started.generation, started.entry.id
        if started.prompt is not None and status == "succeeded" and self._prompts is not None:
            self._prompts.record(
                started.prompt,
                output_text=gen.stats.output_text(),
                latency_ms=_engine_ms(gen),
                cost_units=started.cost_units,
            )
        observe_generation(self._metrics, model_id, endpoint, gen, status)
        self._traces.record_generation(
            ctx,
            endpoint=endpoint,
            model_id=model_id,
            timings=gen.stats,
            status=status,
            route_id=started.audit.route_id,
            provider=started.audit.provider,
            record_id=started.receipt.record_id if started.receipt else None,
            prompt_tokens=gen.stats.prompt_tokens,
            completion_tokens=gen.stats.completion_tokens,
            cost_units=started.cost_units,
        )

    def _seal(self, started: StartedText) -> Awaitable[AuditReceipt]:
        """Sign the call's audit record over what was actually produced (also for a cancelled
        stream: the record covers what was billed) and queue its log append, now: once queued it
        is written whatever becomes of the call. What is returned waits for the commit (a
        failure to sign comes out there, as a failed write does)."""
        stats = started.generation.stats
        usage = AuditUsage(input_tokens=stats.prompt_tokens, output_tokens=stats.completion_tokens)
        try:
            sealed = self._audit.seal(started.audit, output_text=stats.output_text(), usage=usage)
        except Exception as exc:
            failed: asyncio.Future[AuditReceipt] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            return failed
        return sealed.receipt_unshielded()  # `_sealed` is its only wait

    @staticmethod
    async def _sealed(started: StartedText, sealing: Awaitable[AuditReceipt]) -> None:
        try:
            # Cancelled here, only the wait ends: the append is queued and runs on.
            started.receipt = await sealing
        except Exception:
            # The answer stands without its receipt; the operator must hear about it.
            log.exception("audit record %s could not be written", started.audit.record_id)

    async def _pump(
        self,
        gen: TextGeneration,
        call: MeteredCall,
        pricing: Pricing,
        runner: TextRunner,
        prepared: PreparedPrompt,
        choices: int,
    ) -> None:
        """Engine → buffer, counting usage as it grows so a cancellation charges what was made.
        With `n` > 1 the choices are generated one after another, each its own sample (a seeded
        request's choice i gets seed + i); usage counts the prompt once, as OpenAI does, and the
        completion tokens of every choice.

        The counts are kept per token and priced once, when the pump stops for any reason (the
        end, a cancel, an error): the metered call reads its figures only when it closes, after
        this returns or raises, so pricing every token (two calls per token) bought nothing."""
        prompt_tokens, finished = prepared.prompt_tokens, 0  # finished: tokens of earlier choices
        total = -1  # completion tokens so far; -1 until the engine's first delta (nothing to record)
        # Bound once: the loop below runs once per token.
        stats, push_nowait = gen.stats, gen.push_nowait
        try:
            for index in range(choices):
                completion = 0
                async with contextlib.aclosing(runner.generate(_nth_sample(prepared, index))) as deltas:
                    async for delta in deltas:
                        text, usage = delta.text, delta.usage
                        if usage is not None:
                            prompt_tokens, completion = usage.prompt_tokens, usage.completion_tokens
                        elif text or delta.tool_calls:
                            completion += 1
                        total = finished + completion
                        stats.prompt_tokens, stats.completion_tokens = prompt_tokens, total
                        if text:
                            stats.text_parts.append(text)
                        if index == 0:
                            if delta.finish_reason is not None:
                                stats.finish_reason = delta.finish_reason
                            if delta.tool_calls:
                                stats.tool_calls.extend(delta.tool_calls)
                            item = delta
                        else:
                            item = delta.of_choice(index)
                        if not push_nowait(item):  # the buffer is full: wait for room (or drop)
                            await gen.push(item)
                finished += completion
        finally:
            if total >= 0:
                call.record(
                    cost_units=text_cost(pricing, prompt_tokens, total),
                    input_tokens=prompt_tokens,
                    output_tokens=total,
                )


def observe_generation(
    m: InferenceMetrics, model: str, endpoint: str, gen: TextGeneration, status: str
) -> None:
    """A finished call's metrics: its outcome, queueing, TTFT and decode speed."""
    stats = gen.stats
    m.count_request(model, endpoint, status)
    series = m.series(model, endpoint)
    if stats.admitted_at:
        series.queue_seconds.observe(stats.queued_seconds)
    if stats.ttft_seconds is not None:
        series.ttft_seconds.observe(stats.ttft_seconds)
    decode = stats.decode_seconds
    if decode and stats.completion_tokens > 1:
        series.inter_token_seconds.observe(decode / (stats.completion_tokens - 1))
        series.tokens_per_second.observe((stats.completion_tokens - 1) / decode)


def _engine_ms(gen: TextGeneration) -> int:
    """Engine time of a finished call (admitted → finished): queueing excluded."""
    stats = gen.stats
    return max(0, round(((stats.finished_at or stats.admitted_at) - stats.admitted_at) * 1000))


def _nth_sample(prepared: PreparedPrompt, index: int) -> PreparedPrompt:
    seed = prepared.sampling.seed
    if index == 0 or seed is None:
        return prepared
    return replace(prepared, sampling=replace(prepared.sampling, seed=seed + index))


def _ranked(prepared: PreparedPrompt, priority: int, *, preemptible: bool) -> PreparedPrompt:
    if prepared.priority == priority and prepared.preemptible == preemptible:
        return prepared
    return replace(prepared, priority=priority, preemptible=preemptible)
