"""Tool calling, in OpenAI's names: function tools and `tool_choice` for chat completions and for the
Responses API, and the calls a model makes, whole and as stream pieces.

Only function tools exist here (`type: "function"`); OpenAI's hosted tools (web search, file
search, computer use, ...) and custom tools are refused with a 400 naming `tools`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from batchin.protocol.common import omitted_if_none

__all__ = [
    "ChatTool",
    "ChatToolChoice",
    "FunctionCall",
    "FunctionCallPiece",
    "FunctionDefinition",
    "ItemStatus",
    "NamedToolChoice",
    "ResponseFunctionCall",
    "ResponseFunctionCallOutput",
    "ResponseFunctionTool",
    "ResponseNamedToolChoice",
    "ResponseToolChoice",
    "ToolCall",
    "ToolCallChunk",
]

# OpenAI's rule for function names; it also keeps a name safe inside JSON and a grammar literal.
FunctionName = Annotated[
    str, Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$", description="a-z, A-Z, 0-9, _ and -; at most 64")
]
ToolChoiceMode = Literal["none", "auto", "required"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]


class FunctionDefinition(BaseModel):
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = Field(
        default=None, description="JSON Schema of the arguments (an object); omitted: no arguments."
    )
    strict: bool | None = None


class ChatTool(BaseModel):
    type: Literal["function"]
    function: FunctionDefinition


class ToolChoiceFunctionName(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"]
    function: ToolChoiceFunctionName


ChatToolChoice = ToolChoiceMode | NamedToolChoice


class FunctionCall(BaseModel):
    name: str
    arguments: str = Field(description="The arguments as JSON text.")


class ToolCall(BaseModel):
    """A call the model made: in an assistant message of the conversation, and in our replies."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class FunctionCallPiece(BaseModel):
    name: str | None = omitted_if_none("On a call's first piece.")
    arguments: str | None = omitted_if_none("A fragment of the arguments' JSON text.")


class ToolCallChunk(BaseModel):
    """A streamed piece of a call: the first has `id`, `type` and the name; later ones argument
    fragments, all joined by `index`."""

    index: int
    id: str | None = omitted_if_none()
    type: Literal["function"] | None = omitted_if_none()
    function: FunctionCallPiece


# ---- the Responses API ----


class ResponseFunctionTool(BaseModel):
    type: Literal["function"]
    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseNamedToolChoice(BaseModel):
    type: Literal["function"]
    name: str


ResponseToolChoice = ToolChoiceMode | ResponseNamedToolChoice


class ResponseFunctionCall(BaseModel):
    """A function call item: in `input` (a call made earlier) and in `output`."""

    type: Literal["function_call"] = "function_call"
    id: str | None = omitted_if_none()
    call_id: str
    name: str
    arguments: str
    status: ItemStatus | None = omitted_if_none()


class ResponseFunctionCallOutput(BaseModel):
    """The result of a call, sent back in `input`."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[dict[str, Any]]
    id: str | None = None
    status: str | None = None
