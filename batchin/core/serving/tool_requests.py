"""A chat request's conversation and tools as the engine takes them (models/base.py): messages with
their image parts, tool calls and tool results, and the tool set with OpenAI's `tool_choice` spelled
out."""

from __future__ import annotations

import orjson

from batchin.models.base import ChatMessage, ContentPart, ToolCall, ToolFunction, ToolSet
from batchin.models.grammars import check_schema
from batchin.protocol.chat_messages import ChatMessageIn
from batchin.protocol.text import ChatCompletionRequest
from batchin.protocol.tools import NamedToolChoice

__all__ = ["check_tool_schemas", "engine_messages", "engine_tools", "transcript"]

_NO_ARGUMENTS = {"type": "object", "properties": {}}


def _engine_message(message: ChatMessageIn) -> ChatMessage:
    calls = tuple(ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ())
    role = "system" if message.role == "developer" else message.role
    parts: tuple[ContentPart, ...] = ()
    if message.has_images():  # only then: a text-only message reaches the engine as plain text
        parts = tuple(
            ContentPart("text", text=value)
            if kind == "text"
            else ContentPart("image_url", url=value, detail=detail)
            for kind, value, detail in message.parts()
        )
    return ChatMessage(role, message.text(), parts, tool_calls=calls, tool_call_id=message.tool_call_id)


def engine_messages(request: ChatCompletionRequest) -> tuple[ChatMessage, ...]:
    return tuple(_engine_message(m) for m in request.messages)


def engine_tools(request: ChatCompletionRequest) -> ToolSet | None:
    """None without tools. Parameters become JSON text in the caller's key order (the order the
    model is shown and, under the grammar, writes the arguments in)."""
    if not request.tools:
        return None
    functions = tuple(
        ToolFunction(
            name=tool.function.name,
            description=tool.function.description,
            parameters=orjson.dumps(tool.function.parameters or _NO_ARGUMENTS).decode(),
            strict=tool.function.strict,
        )
        for tool in request.tools
    )
    choice = request.tool_choice
    parallel = request.parallel_tool_calls is not False
    if isinstance(choice, NamedToolChoice):
        return ToolSet(functions, "required", choice.function.name, parallel)
    return ToolSet(functions, choice or "auto", None, parallel)


def check_tool_schemas(request: ChatCompletionRequest, *, grammar: bool) -> None:
    """400 naming `tools` for a function whose `parameters` is not valid JSON Schema, and, on an
    engine that holds calls to their schemas with a grammar (`grammar`), for a `strict` function
    whose schema uses keywords the grammar cannot enforce (numeric bounds and the others listed in
    models/grammars.py): strict promises the arguments match. Without strict such a schema is
    taken, and those keywords are the caller's to check."""
    for tool in request.tools or ():
        parameters = tool.function.parameters
        if parameters is not None:
            check_schema(parameters, param="tools", grammar=grammar and bool(tool.function.strict))


def transcript(messages: tuple[ChatMessage, ...]) -> bytes:
    """The conversation as the audit record's input: roles and contents, the URLs of any images,
    and any tool calls and tool results in OpenAI's names."""
    out: list[dict[str, object]] = []
    for m in messages:
        entry: dict[str, object] = {"role": m.role, "content": m.content}
        if m.parts:
            entry["images"] = [part.url for part in m.parts if part.type == "image_url"]
        if m.tool_calls:
            entry["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in m.tool_calls
            ]
        if m.tool_call_id is not None:
            entry["tool_call_id"] = m.tool_call_id
        out.append(entry)
    return orjson.dumps(out)
