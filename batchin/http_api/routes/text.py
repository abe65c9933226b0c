"""/v1/chat/completions, /v1/completions, /v1/responses: parse, call core, render."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from pydantic import BaseModel
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response

from batchin.core.context import CallContext
from batchin.core.serving import text_serving
from batchin.core.serving.inference import InferenceService
from batchin.core.serving.text_producer import StartedText
from batchin.http_api.endpoint import Endpoint
from batchin.http_api.rendering import parse_json, render
from batchin.http_api.streaming import (
    CLIENT_CLOSED_REQUEST,
    ClientDisconnected,
    DisconnectWatch,
    sse_response,
    until_disconnect,
)
from batchin.protocol.responses import ResponseCreateRequest, ResponseObject
from batchin.protocol.text import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest
from batchin.services import Services

_TEXT_ERRORS = (400, 402, 404, 413, 503)
_STREAM = ("text/event-stream",)  # with `stream: true`


Start = Callable[[], Awaitable[StartedText]]


@dataclass(frozen=True, slots=True)
class TextDeps:
    """What /v1/chat/completions, /v1/completions and /v1/responses use."""

    inference: InferenceService
    max_body_bytes: int

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(inference=services.inference, max_body_bytes=services.settings.max_body_bytes)


async def _respond(
    request: Request,
    ctx: CallContext,
    *,
    stream: bool,
    start: Start,
    whole: Callable[[StartedText], Awaitable[BaseModel]],
    chunks: Callable[[StartedText], AsyncIterator[Sequence[bytes | BaseModel | dict[str, Any]]]],
) -> Response:
    """Admission (which may queue) and, when not streaming, the whole generation run under a
    disconnect watch: a caller that leaves while queued or waiting cancels its work."""
    if stream:
        # One watch for the whole call: it cancels the start if the caller leaves while queued,
        # then the response takes it over to end the stream (one watcher task, not two).
        watch = DisconnectWatch(request.receive)
        try:
            started = await until_disconnect(request, start(), watch=watch)
        except BaseException as exc:
            watch.cancel()
            if isinstance(exc, ClientDisconnected):
                return Response(status_code=CLIENT_CLOSED_REQUEST)
            raise
        headers = {**ctx.response_headers(), **started.audit_headers()}
        started.generation.hold_epilogue()
        events = sse_response(
            request, chunks(started), headers=headers, on_close=started.generation.aclose, watch=watch
        )
        events.background = BackgroundTask(_epilogue, started)  # after `[DONE]`
        return events

    async def run() -> tuple[BaseModel, StartedText]:
        started = await start()
        started.generation.hold_epilogue()  # run below, once the answer is sent
        try:
            result = await whole(started)
        finally:
            await started.generation.aclose()
        return result, started

    try:
        result, started = await until_disconnect(request, run())
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED_REQUEST)  # nobody is left to read it
    response = render(result, headers={**ctx.response_headers(), **started.audit_headers()})
    response.background = BackgroundTask(_epilogue, started)
    return response


async def _epilogue(started: StartedText) -> None:
    """The call's metrics, trace and prompt sample, recorded once its answer has left (the answer
    waited for the settlement and the receipt only), before the connection's next request is read.
    Where the response never gets here (the caller left), the loop runs it instead."""
    started.generation.run_epilogue()


async def create_chat_completion(request: Request, ctx: CallContext, deps: TextDeps) -> Response:
    body = await parse_json(request, ChatCompletionRequest, deps.max_body_bytes)
    inference = deps.inference
    return await _respond(
        request,
        ctx,
        stream=body.stream,
        start=lambda: inference.start_chat(ctx, body),
        whole=text_serving.chat_completion,
        chunks=lambda started: text_serving.chat_chunks(started, include_usage=body.include_usage),
    )


async def create_completion(request: Request, ctx: CallContext, deps: TextDeps) -> Response:
    body = await parse_json(request, CompletionRequest, deps.max_body_bytes)
    inference = deps.inference
    return await _respond(
        request,
        ctx,
        stream=body.stream,
        start=lambda: inference.start_completion(ctx, body),
        whole=text_serving.completion,
        chunks=lambda started: text_serving.completion_chunks(started, include_usage=body.include_usage),
    )


async def create_response(request: Request, ctx: CallContext, deps: TextDeps) -> Response:
    body = await parse_json(request, ResponseCreateRequest, deps.max_body_bytes)
    inference = deps.inference
    return await _respond(
        request,
        ctx,
        stream=body.stream,
        start=lambda: inference.start_response(ctx, body),
        whole=lambda started: text_serving.response_object(started, body),
        chunks=lambda started: text_serving.response_events(started, body),
    )


ENDPOINTS = [
    Endpoint(
        "POST",
        "/v1/chat/completions",
        create_chat_completion,
        "Chat completion; `stream: true` for server-sent events.",
        request_model=ChatCompletionRequest,
        response_model=ChatCompletion,
        other_content_types=_STREAM,
        deps=TextDeps,
        tag="inference",
        errors=_TEXT_ERRORS,
        scope="inference",
    ),
    Endpoint(
        "POST",
        "/v1/completions",
        create_completion,
        "Text completion, with fill-in-the-middle via `suffix` on models that support it.",
        request_model=CompletionRequest,
        response_model=Completion,
        other_content_types=_STREAM,
        deps=TextDeps,
        tag="inference",
        errors=_TEXT_ERRORS,
        scope="inference",
    ),
    Endpoint(
        "POST",
        "/v1/responses",
        create_response,
        "Responses API: string or message input, `instructions`; streaming emits typed events.",
        request_model=ResponseCreateRequest,
        response_model=ResponseObject,
        other_content_types=_STREAM,
        deps=TextDeps,
        tag="inference",
        errors=_TEXT_ERRORS,
        scope="inference",
    ),
]
