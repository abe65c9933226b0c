"""Structured outputs and log probabilities: OpenAI's shapes for `response_format` (chat
completions), `text.format` (Responses), and the `logprobs` of chat and legacy completion choices.

Core checks a JSON schema before any engine work (`models/grammars.py`: valid JSON Schema, and
only what a grammar can enforce), so an unsupported one is a 400 naming the parameter.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ChatLogprobs",
    "ChatTokenLogprob",
    "CompletionLogprobs",
    "JsonSchemaSpec",
    "ResponseFormat",
    "ResponseFormatJsonObject",
    "ResponseFormatJsonSchema",
    "ResponseFormatText",
    "ResponseTextConfig",
    "TextFormat",
    "TextFormatJsonSchema",
    "TopLogprob",
]


def _name() -> Any:
    return Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The format's name (letters, digits, _ and -)")


class ResponseFormatText(BaseModel):
    type: Literal["text"]


class ResponseFormatJsonObject(BaseModel):
    """Any JSON object (the model should still be asked for JSON in the messages)."""

    type: Literal["json_object"]


class JsonSchemaSpec(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    name: str = _name()
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema", description="A JSON Schema")
    strict: bool | None = None


class ResponseFormatJsonSchema(BaseModel):
    """Output that matches `json_schema.schema`; on embedded models enforced token by token."""

    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormat = ResponseFormatText | ResponseFormatJsonObject | ResponseFormatJsonSchema


class TextFormatJsonSchema(BaseModel):
    """The Responses API's `text.format` for a schema: the chat form's fields, flattened."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["json_schema"]
    name: str = _name()
    description: str | None = None
    schema_: dict[str, Any] = Field(alias="schema", description="A JSON Schema")
    strict: bool | None = None


TextFormat = ResponseFormatText | ResponseFormatJsonObject | TextFormatJsonSchema


class ResponseTextConfig(BaseModel):
    format: TextFormat | None = Field(default=None, discriminator="type")


# ---- log probabilities (what the server returns) ----


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class ChatTokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class ChatLogprobs(BaseModel):
    """A chat choice's `logprobs`: the tokens of its content, which concatenate to the content."""

    content: list[ChatTokenLogprob] | None
    refusal: list[ChatTokenLogprob] | None = None


class CompletionLogprobs(BaseModel):
    """A legacy completion choice's `logprobs` (parallel lists, one entry per token)."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]
