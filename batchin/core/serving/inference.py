"""Text inference: chat completions, completions and responses over any TextRunner.

One path for all three: resolve the model → prepare the prompt (exact token count, context check)
→ reserve the maximum cost → flow policy (region, lane) → admission slot → engine → settle. The
caller gets a TextGeneration to stream from or to collect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace

import orjson

from batchin.config import Settings
from batchin.core.audit.records import AuditReceipt, AuditUsage, PendingRecord
from batchin.core.audit.service import AuditService
from batchin.core.billing.metering import ClientGone, MeteredCall, MeteringService
from batchin.core.billing.money import cost_per_million
from batchin.core.context import CallContext, Principal
from batchin.core.prompts.service import PromptRun, PromptService
from batchin.core.serving.admission import AdmissionPool, Priority
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.generation import TextGeneration
from batchin.core.serving.metrics import InferenceMetrics
from batchin.core.serving.model_lookup import no_fim_message, no_vision_message, prices_for, usable_model
from batchin.core.serving.text_options import require_capabilities, sampling_params
from batchin.core.serving.tool_requests import check_tool_schemas, engine_messages, engine_tools, transcript
from batchin.core.traces.service import TraceService
from batchin.errors import BatchInError, InvalidRequest, Preempted
from batchin.models.base import (
    ChatParams,
    CompletionParams,
    PreparedPrompt,
    TextRunner,
)
from batchin.models.catalog import GRAMMAR_ENGINES, CatalogEntry, Kind, Pricing
from batchin.models.registry import ModelRegistry
from batchin.protocol.responses import ResponseCreateRequest
from batchin.protocol.text import DEFAULT_COMPLETION_MAX_TOKENS, ChatCompletionRequest, CompletionRequest

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


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metering: MeteringService,
        flow: FlowPolicy,
        metrics: InferenceMetrics,
        audit: AuditService,
        traces: TraceService,
        prompts: PromptService | None = None,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._metering = metering
        self._flow = flow
        self._metrics = metrics
        self._audit = audit
        self._traces = traces
        self._prompts = prompts

    async def start_chat(
        self,
        ctx: CallContext,
        request: ChatCompletionRequest,
        *,
        endpoint: str = "chat.completions",
        priority: Priority = Priority.INTERACTIVE,
        observe: bool = True,
        format_param: str = "response_format",
    ) -> StartedText:
        """`observe=False`: not attributed nor recorded in the prompt registry (experiment replays,
        which carry the version they replay in `ctx.prompt_version`). `format_param`: what errors
        call `response_format` (the Responses API's `text.format`)."""
        request.refuse_unsupported()
        images = any(m.has_images() for m in request.messages)
        entry, runner = await self._text_model(request.model, "chat", ctx.principal, images=images)
        renamed = {"response_format": format_param}
        require_capabilities(request, entry, self._registry.entries(), ctx.principal, renamed=renamed)
        tools = engine_tools(request)
        if tools is not None and tools.choice != "none" and not runner.supports_tools:
            raise InvalidRequest(
                f"Model '{entry.id}' does not support tool calling; omit tools or use another model.",
                param="tools",
            )
        if tools is not None and tools.choice != "none":
            check_tool_schemas(request, grammar=entry.engine in GRAMMAR_ENGINES)
        messages = engine_messages(request)
        max_tokens = request.requested_max_tokens()
        sampling = sampling_params(request, entry, max_tokens or 1, format_param=format_param)
        params = ChatParams(messages, sampling, stream=request.stream, tools=tools)
        prepared = await runner.prepare_chat(params)
        if max_tokens is None:
            # No limit asked: the completion may use the rest of the context (OpenAI's semantics).
            rest = replace(sampling, max_tokens=max(1, (entry.context_length or 0) - prepared.prompt_tokens))
            prepared = await runner.prepare_chat(replace(params, sampling=rest))
        audit_input = transcript(messages)
        prompt = None
        if observe and self._prompts is not None:
            prompt = self._prompts.attribute_chat(
                ctx, messages, request.metadata, entry.id, prepared.sampling
            )
        return await self._start(
            ctx, entry, runner, prepared, endpoint, priority, audit_input, prompt, choices=request.choices
        )

    async def start_completion(
        self, ctx: CallContext, request: CompletionRequest, *, priority: Priority = Priority.INTERACTIVE
    ) -> StartedText:
        request.refuse_unsupported()
        entry, runner = await self._text_model(request.model, "completion", ctx.principal)
        if request.suffix is not None and not runner.supports_fim:
            raise InvalidRequest(no_fim_message(self._registry, entry, ctx.principal), param="suffix")
        require_capabilities(request, entry, self._registry.entries(), ctx.principal)
        sampling = sampling_params(request, entry, request.max_tokens or DEFAULT_COMPLETION_MAX_TOKENS)
        params = CompletionParams(
            request.prompt_text(), sampling, suffix=request.suffix, stream=request.stream
        )
        prepared = await runner.prepare_completion(params)
        audit_input = orjson.dumps({"prompt": params.prompt, "suffix": params.suffix})
        prompt = None
        if self._prompts is not None:
            prompt = self._prompts.attribute_completion(ctx, request.metadata, entry.id, sampling)
        return await self._start(
            ctx,
            entry,
            runner,
            prepared,
            "completions",
            priority,
            audit_input,
            prompt,
            choices=request.choices,
        )

    async def start_response(
        self, ctx: CallContext, request: ResponseCreateRequest, *, priority: Priority = Priority.INTERACTIVE
    ) -> StartedText:
        request.refuse_unsupported()
        chat = ChatCompletionRequest(
            model=request.model,
            messages=request.chat_messages(),
            max_tokens=request.max_output_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            stream=request.stream,
            metadata=request.metadata,
            response_format=request.chat_response_format(),
            tools=request.chat_tools(),
            tool_choice=request.chat_tool_choice(),
            parallel_tool_calls=request.parallel_tool_calls,
        )
        return await self.start_chat(
            ctx, chat, endpoint="responses", priority=priority, format_param="text.format"
        )

    # -- shared path ---------------------------------------------------------------------------

    async def _text_model(
        self, model_id: str, kind: Kind, principal: Principal, *, images: bool = False
    ) -> tuple[CatalogEntry, TextRunner]:
        entry = usable_model(self._registry, model_id, kind, principal)
        if images and "vision" not in entry.capabilities:
            raise InvalidRequest(no_vision_message(self._registry, entry, principal), param="messages")
        return entry, await self._registry.text_runner(model_id)

    def _max_cost(self, pricing: Pricing, prepared: PreparedPrompt, choices: int) -> int:
        prompt = (
            prepared.prompt_tokens
            if prepared.exact
            else int(prepared.prompt_tokens * _ESTIMATE_HEADROOM) + 16
        )
        return self._cost(pricing, prompt, prepared.sampling.max_tokens * choices)

    @staticmethod
    def _cost(pricing: Pricing, prompt_tokens: int, completion_tokens: int) -> int:
        return cost_per_million(prompt_tokens, pricing.input_per_1m or 0) + cost_per_million(
            completion_tokens, pricing.output_per_1m or 0
        )

    async def _start(
        self,
        ctx: CallContext,
        entry: CatalogEntry,
        runner: TextRunner,
        prepared: PreparedPrompt,
        endpoint: str,
        priority: Priority,
        audit_input: bytes,
        prompt: PromptRun | None = None,
        *,
        choices: int = 1,
    ) -> StartedText:
        generation = TextGeneration(
            buffer_size=self._settings.stream_buffer_chunks,
            stall_timeout=self._settings.slow_consumer_timeout_seconds,
            prompt_tokens=prepared.prompt_tokens,
        )
        audit = self._audit.begin_call(ctx, model_id=entry.id, input_text=audit_input)
        started = StartedText(generation, entry, prepared.prompt_tokens, audit, prompt=prompt)

        # The producer's coroutine itself (not one awaiting it): one frame less at each of its waits.
        await generation.start(
            lambda _gen, admitted: self._produce(
                started, admitted, ctx, runner, prepared, endpoint, priority, choices
            )
        )
        return started

    async def _produce(
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
                    max_cost_units=self._max_cost(pricing, prepared, choices),
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
            if started.prompt is not None and status == "succeeded" and self._prompts is not None:
                self._prompts.record(
                    started.prompt,
                    output_text=gen.stats.output_text(),
                    latency_ms=_engine_ms(gen),
                    cost_units=started.cost_units,
                )
            self._observe(entry.id, endpoint, gen, status)
            self._traces.record_generation(
                ctx,
                endpoint=endpoint,
                model_id=entry.id,
                timings=gen.stats,
                status=status,
                route_id=started.audit.route_id,
                provider=started.audit.provider,
                record_id=started.receipt.record_id if started.receipt else None,
                prompt_tokens=gen.stats.prompt_tokens,
                completion_tokens=gen.stats.completion_tokens,
                cost_units=(metered.charged_units or 0) if metered else 0,
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
        """Engine → buffer, recording usage as it grows so a cancellation charges what was made.
        With `n` > 1 the choices are generated one after another, each its own sample (a seeded
        request's choice i gets seed + i); usage counts the prompt once, as OpenAI does, and the
        completion tokens of every choice."""
        prompt_tokens, finished = prepared.prompt_tokens, 0  # finished: tokens of earlier choices
        # Bound once: the loop below runs once per token.
        stats, record, cost, push_nowait = gen.stats, call.record, self._cost, gen.push_nowait
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
                    record(
                        cost_units=cost(pricing, prompt_tokens, total),
                        input_tokens=prompt_tokens,
                        output_tokens=total,
                    )
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

    def _observe(self, model: str, endpoint: str, gen: TextGeneration, status: str) -> None:
        m, stats = self._metrics, gen.stats
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
