"""The Responses API's shapes for a started text generation: the whole response object, and the
typed event sequence of a streamed one (its items opened and closed in order, each event numbered)."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from batchin.core.serving.text_producer import StartedText
from batchin.core.serving.tool_replies import FunctionCallItems
from batchin.models.base import ToolCallDelta
from batchin.protocol.responses import (
    ResponseCreateRequest,
    ResponseObject,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseUsage,
)
from batchin.protocol.tools import ItemStatus, ResponseFunctionCall


class ResponseBuilder:
    """Builds the response object as it grows, for both the plain and the streamed form: a message
    item (when there is text, or nothing else), then one `function_call` item per tool call."""

    def __init__(self, started: StartedText, request: ResponseCreateRequest) -> None:
        self.started = started
        self.request = request
        self.id = "resp_" + secrets.token_hex(12)
        self.message_id = "msg_" + secrets.token_hex(12)
        self.created_at = int(time.time())
        self.text = ""
        self.calls = FunctionCallItems()

    def take(self, text: str, pieces: tuple[ToolCallDelta, ...]) -> None:
        self.text += text
        for piece in pieces:
            self.calls.add(piece)

    @property
    def has_message(self) -> bool:
        return bool(self.text) or not self.calls

    def message(self, status: str) -> ResponseOutputMessage:
        content = [ResponseOutputText(text=self.text)] if status != "in_progress" else []
        return ResponseOutputMessage(id=self.message_id, status=status, content=content)

    def response(self, *, done: bool) -> ResponseObject:
        stats = self.started.generation.stats
        incomplete = done and stats.finish_reason == "length"
        status = "in_progress" if not done else ("incomplete" if incomplete else "completed")
        output: list[ResponseOutputMessage | ResponseFunctionCall] = []
        if done:
            item_status: ItemStatus = "incomplete" if incomplete else "completed"
            output = [self.message(item_status)] if self.has_message else []
            output += self.calls.items(item_status)
        request = self.request
        return ResponseObject(
            id=self.id,
            created_at=self.created_at,
            status=status,
            model=self.started.entry.id,
            output=output,
            usage=ResponseUsage(
                input_tokens=stats.prompt_tokens,
                output_tokens=stats.completion_tokens,
                total_tokens=stats.prompt_tokens + stats.completion_tokens,
            )
            if done
            else None,
            instructions=request.instructions,
            max_output_tokens=request.max_output_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            metadata=request.metadata or {},
            incomplete_details={"reason": "max_output_tokens"} if incomplete else None,
            text=request.echoed_text(),
            parallel_tool_calls=request.parallel_tool_calls is not False,
            tool_choice=request.tool_choice or "auto",
            tools=request.tools or [],
        )


async def response_object(started: StartedText, request: ResponseCreateRequest) -> ResponseObject:
    builder = ResponseBuilder(started, request)
    async for delta in started.generation:
        builder.take(delta.text, delta.tool_calls)
    return builder.response(done=True)


async def response_events(
    started: StartedText, request: ResponseCreateRequest
) -> AsyncIterator[list[dict[str, Any]]]:
    """The typed event sequence the openai SDK parses, each with its sequence_number. The message
    item opens with the first text (or at the end, empty, when the reply has neither text nor
    calls); each tool call is an item of its own, its arguments streamed as they are written.
    A list of events per batch of deltas that were ready together (one write for them)."""
    b = ResponseBuilder(started, request)
    events = _ResponseEvents(b)
    yield [
        events.event("response.created", response=b.response(done=False).model_dump(mode="json")),
        events.event("response.in_progress", response=b.response(done=False).model_dump(mode="json")),
    ]
    async for deltas in started.generation.batches():
        out: list[dict[str, Any]] = []
        for delta in deltas:
            out += events.delta(delta.text, delta.tool_calls)
        if out:
            yield out
    final = b.response(done=True)
    last = list(events.close(final))
    kind = "response.incomplete" if final.status == "incomplete" else "response.completed"
    last.append(events.event(kind, response=final.model_dump(mode="json")))
    yield last


class _ResponseEvents:
    """The item events of a streamed response, in order: which item is open, at which index."""

    def __init__(self, builder: ResponseBuilder) -> None:
        self.b = builder
        self.sequence = 0
        self.outputs = 0  # output items opened so far
        self.message_at: int | None = None  # the message item's output_index, once opened
        self.message_open = False
        self.call_at: dict[int, int] = {}  # call index → output_index
        self.open_call: int | None = None

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **fields}

    def _where(self) -> dict[str, Any]:
        return {"item_id": self.b.message_id, "output_index": self.message_at, "content_index": 0}

    def _open_message(self) -> list[dict[str, Any]]:
        self.message_at, self.message_open = self.outputs, True
        self.outputs += 1
        empty = ResponseOutputText(text="").model_dump(mode="json")
        item = self.b.message("in_progress").model_dump(mode="json")
        return [
            self.event("response.output_item.added", output_index=self.message_at, item=item),
            self.event("response.content_part.added", **self._where(), part=empty),
        ]

    def _close_message(self, status: str) -> list[dict[str, Any]]:
        self.message_open = False
        part = ResponseOutputText(text=self.b.text).model_dump(mode="json")
        item = self.b.message(status).model_dump(mode="json")
        return [
            self.event("response.output_text.done", **self._where(), text=self.b.text, logprobs=[]),
            self.event("response.content_part.done", **self._where(), part=part),
            self.event("response.output_item.done", output_index=self.message_at, item=item),
        ]

    def _call_item(self, index: int, status: ItemStatus) -> ResponseFunctionCall:
        item_id = self.b.calls.item_ids[index]
        return next(item for item in self.b.calls.items(status) if item.id == item_id)

    def _close_call(self, status: ItemStatus) -> list[dict[str, Any]]:
        index, self.open_call = self.open_call, None
        if index is None:
            return []
        item = self._call_item(index, status)
        where = {"item_id": item.id, "output_index": self.call_at[index]}
        return [
            self.event(
                "response.function_call_arguments.done", **where, name=item.name, arguments=item.arguments
            ),
            self.event(
                "response.output_item.done",
                output_index=self.call_at[index],
                item=item.model_dump(mode="json"),
            ),
        ]

    def delta(self, text: str, pieces: tuple[ToolCallDelta, ...]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if text and self.message_at is None:
            out += self._open_message()
        self.b.take(text, ())
        if text and self.message_open:  # text after the calls began (an upstream's) is kept, not streamed
            out.append(self.event("response.output_text.delta", **self._where(), delta=text, logprobs=[]))
        for piece in pieces:
            item_id = self.b.calls.add(piece)
            if piece.index not in self.call_at:
                if self.message_open:
                    out += self._close_message("completed")
                out += self._close_call("completed")
                self.call_at[piece.index], self.open_call = self.outputs, piece.index
                self.outputs += 1
                item = self._call_item(piece.index, "in_progress").model_copy(update={"arguments": ""})
                out.append(
                    self.event(
                        "response.output_item.added",
                        output_index=self.call_at[piece.index],
                        item=item.model_dump(mode="json"),
                    )
                )
            if piece.arguments:
                where = {"item_id": item_id, "output_index": self.call_at[piece.index]}
                out.append(
                    self.event("response.function_call_arguments.delta", **where, delta=piece.arguments)
                )
        return out

    def close(self, final: ResponseObject) -> list[dict[str, Any]]:
        status: ItemStatus = "incomplete" if final.status == "incomplete" else "completed"
        out: list[dict[str, Any]] = []
        if self.message_at is None and self.b.has_message:
            out += self._open_message()
        if self.message_open:
            out += self._close_message(status)
        return out + self._close_call(status)
