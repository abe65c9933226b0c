"""Text inference: chat completions, completions and responses over any TextRunner.

One path for all three: resolve the model → prepare the prompt (exact token count, context check)
→ reserve the maximum cost → flow policy (region, lane) → admission slot → engine → settle. The
caller gets a TextGeneration to stream from or to collect. This module prepares the call; the
producer task that runs it (money, slot, engine, record) is `text_producer.TextProducer`.
"""

from __future__ import annotations

from dataclasses import replace

import orjson

from batchin.config import Settings
from batchin.core.audit.service import AuditService
from batchin.core.billing.metering import MeteringService
from batchin.core.context import CallContext, Principal
from batchin.core.prompts.service import PromptRun, PromptService
from batchin.core.serving.admission import Priority
from batchin.core.serving.flow import FlowPolicy
from batchin.core.serving.generation import TextGeneration
from batchin.core.serving.metrics import InferenceMetrics
from batchin.core.serving.model_lookup import no_fim_message, no_vision_message, usable_slot
from batchin.core.serving.text_options import require_capabilities, sampling_params
from batchin.core.serving.text_producer import StartedText, TextProducer
from batchin.core.serving.tool_requests import check_tool_schemas, engine_messages, engine_tools, transcript
from batchin.core.traces.service import TraceService
from batchin.errors import InvalidRequest
from batchin.models.base import (
    ChatParams,
    CompletionParams,
    PreparedPrompt,
    TextRunner,
)
from batchin.models.catalog import GRAMMAR_ENGINES, CatalogEntry, Kind
from batchin.models.registry import ModelRegistry
from batchin.protocol.responses import ResponseCreateRequest
from batchin.protocol.text import DEFAULT_COMPLETION_MAX_TOKENS, ChatCompletionRequest, CompletionRequest


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
        self._audit = audit
        self._prompts = prompts
        self._producer = TextProducer(metering, flow, metrics, audit, traces, prompts)

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
        require_capabilities(request, entry, self._registry.entries, ctx.principal, renamed=renamed)
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
        require_capabilities(request, entry, self._registry.entries, ctx.principal)
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
        slot = usable_slot(self._registry, model_id, kind, principal)
        entry = slot.entry
        if images and "vision" not in entry.capabilities:
            raise InvalidRequest(no_vision_message(self._registry, entry, principal), param="messages")
        return entry, await self._registry.text_runner(slot, called=model_id)

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
        audit = self._audit.begin_call(ctx, model_id=entry.id, input_text=audit_input, entry=entry)
        started = StartedText(generation, entry, prepared.prompt_tokens, audit, prompt=prompt)

        # The producer's coroutine itself (not one awaiting it): one frame less at each of its waits.
        produce = self._producer.produce
        await generation.start(
            lambda _gen, admitted: produce(
                started, admitted, ctx, runner, prepared, endpoint, priority, choices
            )
        )
        return started
