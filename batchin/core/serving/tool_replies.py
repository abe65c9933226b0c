"""Tool calls in OpenAI's reply shapes: whole calls in a chat message, the stream pieces of
`delta.tool_calls`, and the `function_call` output items of the Responses API."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from batchin.models.base import ToolCallDelta
from batchin.models.tool_calls import assembled_calls
from batchin.protocol.tools import FunctionCall, ItemStatus, ResponseFunctionCall, ToolCall

__all__ = ["FunctionCallItems", "chat_tool_calls", "chunk_tool_calls"]


def chat_tool_calls(pieces: Iterable[ToolCallDelta]) -> list[ToolCall] | None:
    """A reply's calls, whole; None when it made none (the message then has no `tool_calls`)."""
    calls = [
        ToolCall(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments))
        for c in assembled_calls(pieces)
    ]
    return calls or None


def chunk_tool_calls(pieces: tuple[ToolCallDelta, ...]) -> list[dict[str, Any]]:
    """`delta.tool_calls` of one chunk, as OpenAI streams them: a call's first piece with its id,
    type and name (and `arguments: ""` or a first fragment), the next ones with fragments only.
    Plain dicts shaped as ToolCallChunk, like the per-token content chunks."""
    out: list[dict[str, Any]] = []
    for piece in pieces:
        if piece.id is not None:
            function = {"name": piece.name or "", "arguments": piece.arguments}
            out.append({"index": piece.index, "id": piece.id, "type": "function", "function": function})
        else:
            out.append({"index": piece.index, "function": {"arguments": piece.arguments}})
    return out


class FunctionCallItems:
    """The `function_call` output items of one response, each with an item id (`fc_…`) fixed when
    its first piece arrives, so the streamed events and the final object name the same items."""

    def __init__(self) -> None:
        self.pieces: list[ToolCallDelta] = []
        self.item_ids: dict[int, str] = {}

    def add(self, piece: ToolCallDelta) -> str:
        """Record a piece; returns its item's id."""
        self.pieces.append(piece)
        return self.item_ids.setdefault(piece.index, "fc_" + secrets.token_hex(12))

    def items(self, status: ItemStatus) -> list[ResponseFunctionCall]:
        calls = assembled_calls(self.pieces)
        indexes = sorted(self.item_ids)
        return [
            ResponseFunctionCall(
                id=self.item_ids[index],
                call_id=call.id,
                name=call.name,
                arguments=call.arguments,
                status=status,
            )
            for index, call in zip(indexes, calls, strict=True)
        ]

    def __len__(self) -> int:
        return len(self.item_ids)
