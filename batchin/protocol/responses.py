"""The Responses API's shapes (/v1/responses): the request, which owns its conversion to a chat
request, and the response object."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from batchin.errors import InvalidRequest
from batchin.protocol.chat_messages import ChatMessageIn
from batchin.protocol.common import RequestModel, omitted_if_none
from batchin.protocol.structured import (
    JsonSchemaSpec,
    ResponseFormat,
    ResponseFormatJsonSchema,
    ResponseTextConfig,
    TextFormatJsonSchema,
)
from batchin.protocol.tools import (
    ChatTool,
    ChatToolChoice,
    FunctionCall,
    FunctionDefinition,
    NamedToolChoice,
    ResponseFunctionCall,
    ResponseFunctionCallOutput,
    ResponseFunctionTool,
    ResponseToolChoice,
    ToolCall,
    ToolChoiceFunctionName,
)


class ResponseInputMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]]
    type: Literal["message"] | None = None

    def as_chat(self) -> ChatMessageIn:
        return ChatMessageIn(role=self.role, content=self.content)


ResponseInputItem = ResponseInputMessage | ResponseFunctionCall | ResponseFunctionCallOutput


class ResponseCreateRequest(RequestModel):
    model: str = Field(min_length=1)
    input: str | list[ResponseInputItem]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stream: bool = False
    metadata: dict[str, str] | None = None
    tools: list[ResponseFunctionTool] | None = Field(
        default=None, description="Functions the model may call."
    )
    tool_choice: ResponseToolChoice | None = None
    parallel_tool_calls: bool | None = None
    previous_response_id: str | None = None
    user: str | None = None
    text: ResponseTextConfig | None = None

    @model_validator(mode="after")
    def _non_empty_input(self) -> ResponseCreateRequest:
        if isinstance(self.input, list) and not self.input:
            raise ValueError("input must not be empty")
        return self

    def refuse_unsupported(self) -> None:
        if self.previous_response_id:
            raise InvalidRequest(
                "previous_response_id is not supported: responses are not stored.",
                param="previous_response_id",
            )

    def chat_response_format(self) -> ResponseFormat | None:
        """`text.format` in the chat form (`response_format`)."""
        fmt = self.text.format if self.text is not None else None
        if not isinstance(fmt, TextFormatJsonSchema):
            return fmt
        spec = JsonSchemaSpec(
            name=fmt.name, description=fmt.description, schema=fmt.schema_, strict=fmt.strict
        )
        return ResponseFormatJsonSchema(type="json_schema", json_schema=spec)

    def echoed_text(self) -> dict[str, Any]:
        """The response object's `text`: the format asked for (plain text by default)."""
        fmt = self.text.format if self.text is not None else None
        if fmt is None:
            return {"format": {"type": "text"}}
        return {"format": fmt.model_dump(mode="json", by_alias=True, exclude_none=True)}

    def chat_messages(self) -> list[ChatMessageIn]:
        messages: list[ChatMessageIn] = []
        if self.instructions:
            messages.append(ChatMessageIn(role="system", content=self.instructions))
        if isinstance(self.input, str):
            messages.append(ChatMessageIn(role="user", content=self.input))
            return messages
        for item in self.input:
            if isinstance(item, ResponseInputMessage):
                messages.append(item.as_chat())
            elif isinstance(item, ResponseFunctionCall):
                call = ToolCall(
                    id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)
                )
                last = messages[-1] if messages else None
                if last is not None and last.role == "assistant":  # calls of one turn, after its text
                    last.tool_calls = [*(last.tool_calls or ()), call]
                else:
                    messages.append(ChatMessageIn(role="assistant", tool_calls=[call]))
            else:
                messages.append(ChatMessageIn(role="tool", content=item.output, tool_call_id=item.call_id))
        return messages

    def chat_tools(self) -> list[ChatTool] | None:
        if self.tools is None:
            return None
        return [
            ChatTool(
                type="function",
                function=FunctionDefinition(
                    name=t.name, description=t.description, parameters=t.parameters, strict=t.strict
                ),
            )
            for t in self.tools
        ]

    def chat_tool_choice(self) -> ChatToolChoice | None:
        choice = self.tool_choice
        if choice is None or isinstance(choice, str):
            return choice
        return NamedToolChoice(type="function", function=ToolChoiceFunctionName(name=choice.name))


# ---- the response object ----


class ResponseInputTokensDetails(BaseModel):
    # Both required by OpenAI's schema; no prompt cache here, so both are 0.
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class ResponseOutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: ResponseInputTokensDetails = Field(default_factory=ResponseInputTokensDetails)
    output_tokens_details: ResponseOutputTokensDetails = Field(default_factory=ResponseOutputTokensDetails)


class ResponseOutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)  # required by OpenAI's schema; none are computed


class ResponseOutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[ResponseOutputText]


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    model: str
    output: list[ResponseOutputMessage | ResponseFunctionCall]
    usage: ResponseUsage | None = omitted_if_none("present once the response is done")
    instructions: str | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    incomplete_details: dict[str, str] | None = None
    error: dict[str, Any] | None = None
    parallel_tool_calls: bool = True
    tool_choice: ResponseToolChoice = "auto"
    tools: list[ResponseFunctionTool] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
