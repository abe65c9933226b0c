"""/v1/chat/completions, /v1/completions, /v1/responses: parse, call core, render."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from batchin.core import text_serving
from batchin.core.context import CallContext
from batchin.core.inference import StartedText
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json, render
from batchin.http_api.streaming import sse_response, until_disconnect
from batchin.protocol.text import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ResponseCreateRequest,
    ResponseObject,
)

_TEXT_ERRORS = (400, 402, 404, 413, 503)


def _stream(
    request: Request, ctx: CallContext, started: StartedText, items: AsyncIterator[BaseModel | dict[str, Any]]
) -> Response:
    settings = request.app.state.services.settings
    return sse_response(
        request,
        items,
        headers=ctx.response_headers(),
        on_close=started.generation.aclose,
        send_timeout=settings.slow_consumer_timeout_seconds,
    )


async def _whole(request: Request, ctx: CallContext, started: StartedText, work: Any) -> Response:
    try:
        result = await until_disconnect(request, work)
    finally:
        await started.generation.aclose()
    response = render(result)
    response.headers.update(ctx.response_headers())
    return response


async def create_chat_completion(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, ChatCompletionRequest)
    started = await request.app.state.services.inference.start_chat(ctx, body)
    if body.stream:
        return _stream(
            request, ctx, started, text_serving.chat_chunks(started, include_usage=body.include_usage)
        )
    return await _whole(request, ctx, started, text_serving.chat_completion(started))


async def create_completion(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, CompletionRequest)
    started = await request.app.state.services.inference.start_completion(ctx, body)
    if body.stream:
        return _stream(
            request, ctx, started, text_serving.completion_chunks(started, include_usage=body.include_usage)
        )
    return await _whole(request, ctx, started, text_serving.completion(started))


async def create_response(request: Request, ctx: CallContext) -> Response:
    body = await parse_json(request, ResponseCreateRequest)
    started = await request.app.state.services.inference.start_response(ctx, body)
    if body.stream:
        return _stream(request, ctx, started, text_serving.response_events(started, body))
    return await _whole(request, ctx, started, text_serving.response_object(started, body))


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/chat/completions",
        create_chat_completion,
        "Chat completion; `stream: true` for server-sent events.",
        request_model=ChatCompletionRequest,
        response_model=ChatCompletion,
        tag="inference",
        errors=_TEXT_ERRORS,
    ),
    Endpoint(
        "POST",
        "/v1/completions",
        create_completion,
        "Text completion, with fill-in-the-middle via `suffix` on models that support it.",
        request_model=CompletionRequest,
        response_model=Completion,
        tag="inference",
        errors=_TEXT_ERRORS,
    ),
    Endpoint(
        "POST",
        "/v1/responses",
        create_response,
        "Responses API: string or message input, `instructions`; streaming emits typed events.",
        request_model=ResponseCreateRequest,
        response_model=ResponseObject,
        tag="inference",
        errors=_TEXT_ERRORS,
    ),
]
