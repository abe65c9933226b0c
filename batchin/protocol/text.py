"""Chat completions and completions: OpenAI's request and response shapes. The Responses API's
are in batchin/protocol/responses.py (re-exported here for existing importers).

Requests own their conversion to engine parameters (`sampling()`), and refuse what BatchIn does not
do with a 400 that names the parameter, rather than silently ignoring it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from batchin.errors import InvalidRequest
from batchin.protocol.chat_messages import ChatMessageIn
from batchin.protocol.common import RequestModel, omitted_if_none
from batchin.protocol.structured import (
    ChatLogprobs,
    CompletionLogprobs,
    ResponseFormat,
)
from batchin.protocol.tools import (
    ChatTool,
    ChatToolChoice,
    NamedToolChoice,
    ToolCall,
    ToolCallChunk,
)

DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
MAX_CHOICES = 4  # `n`: independent samples of one request


class StreamOptions(BaseModel):
    include_usage: bool = False


class SamplingFields(RequestModel):
    model: str = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(
        default=None, ge=1, le=MAX_CHOICES, description="Independent samples (choices); each is billed"
    )
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id (as a string) → bias from -100 to 100 added to its logit"
    )
    user: str | None = None
    metadata: dict[str, str] | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        return tuple(s for s in stops if s)

    def refuse_unsupported(self) -> None:
        """Refusals that hold for every model (what a model lacks is core's check, by capability)."""

    def logprob_count(self) -> int | None:
        """None: no log probabilities; k: each token's, with its k most likely alternatives."""
        return None

    def logit_bias_pairs(self) -> tuple[tuple[int, float], ...]:
        pairs: list[tuple[int, float]] = []
        for key, bias in (self.logit_bias or {}).items():
            if not key.isdigit() or not -100 <= bias <= 100:
                raise InvalidRequest(
                    f"logit_bias maps token ids (digits) to a bias from -100 to 100; got {key!r}: {bias}.",
                    param="logit_bias",
                )
            pairs.append((int(key), float(bias)))
        return tuple(pairs)

    def capability_params(self) -> list[tuple[str, str]]:
        """(capability a model needs for this request, the parameter that asks for it)."""
        wanted: list[tuple[str, str]] = []
        if self.logprob_count() is not None:
            wanted.append(("logprobs", "logprobs"))
        for name in ("presence_penalty", "frequency_penalty", "logit_bias"):
            if getattr(self, name):
                wanted.append(("penalties", name))
        return wanted

    @property
    def choices(self) -> int:
        return self.n or 1

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessageIn] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    tools: list[ChatTool] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: ChatToolChoice | None = Field(
        default=None,
        description="`auto` (the default with tools): text or calls; `none`: text only; `required`: "
        "at least one call; `{type: function, function: {name}}`: a call to that function.",
    )
    parallel_tool_calls: bool | None = Field(
        default=None, description="More than one call per turn (default true)."
    )
    response_format: ResponseFormat | None = Field(default=None, discriminator="type")
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        self._check_tools()
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs: true.", param="top_logprobs")

    def logprob_count(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None

    def capability_params(self) -> list[tuple[str, str]]:
        wanted = super().capability_params()
        if self.response_format is not None and self.response_format.type != "text":
            wanted.append(("json_schema", "response_format"))
        return wanted

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def _check_tools(self) -> None:
        names = [tool.function.name for tool in self.tools or ()]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InvalidRequest(
                f"Tool names must be unique; repeated: {', '.join(repeated)}.", param="tools"
            )
        choice = self.tool_choice
        if choice not in (None, "none", "auto") and not names:
            raise InvalidRequest(
                "tool_choice asks for a tool call, but no tools are given.", param="tool_choice"
            )
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise InvalidRequest(
                f"tool_choice names function '{choice.function.name}', which is not in tools.",
                param="tool_choice",
            )
        for index, message in enumerate(self.messages):
            if message.role == "tool" and not message.tool_call_id:
                raise InvalidRequest(
                    f"messages[{index}]: a tool message needs its tool_call_id.", param="messages"
                )
            if message.tool_calls and message.role != "assistant":
                raise InvalidRequest(
                    f"messages[{index}]: only assistant messages carry tool_calls.", param="messages"
                )


class CompletionRequest(SamplingFields):
    prompt: str | list[str]
    suffix: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    echo: bool = False
    best_of: int | None = Field(default=None, ge=1)
    logprobs: int | None = Field(default=None, ge=0, le=5)

    def refuse_unsupported(self) -> None:
        super().refuse_unsupported()
        if self.echo:
            raise InvalidRequest("echo is not supported.", param="echo")
        if self.best_of not in (None, self.choices):
            raise InvalidRequest("best_of is not supported; use n for more choices.", param="best_of")

    def logprob_count(self) -> int | None:
        return self.logprobs

    def prompt_text(self) -> str:
        if isinstance(self.prompt, str):
            return self.prompt
        if len(self.prompt) == 1:
            return self.prompt[0]
        raise InvalidRequest(
            "Send one prompt per request (a list of one string is accepted).", param="prompt"
        )


# ---- responses (what the server returns) ----


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None  # null when the reply is only tool calls, as OpenAI sends it
    refusal: str | None = None  # required by OpenAI's schema, null when the model did not refuse
    tool_calls: list[ToolCall] | None = omitted_if_none()


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str
    logprobs: ChatLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = omitted_if_none()


class ChatDelta(BaseModel):
    """The first chunk's delta names the role; later ones carry only content, and the finishing
    chunk's delta is empty (`{}`), as OpenAI streams them."""

    role: Literal["assistant"] | None = omitted_if_none()
    content: str | None = omitted_if_none()
    tool_calls: list[ToolCallChunk] | None = omitted_if_none()


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: str | None = None
    logprobs: ChatLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: CompletionUsage | None = None


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str | None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = omitted_if_none()
