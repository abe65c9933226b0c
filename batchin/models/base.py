"""The text runner contract: what core needs from any engine (embedded llama.cpp, ExLlamaV2, a
remote OpenAI-compatible upstream). Runners know nothing of users, money or HTTP.

Flow for one call:
    prepared = await runner.prepare_chat(params)      # apply the chat template, count prompt tokens
    async for delta in runner.generate(prepared):     # stream text; the last delta has usage
        ...
Closing the iterator early (client gone) must stop the engine's work for that request.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class JsonOutput:
    """Output constrained to JSON (`response_format`): `schema` is the JSON Schema's text, checked
    by `grammars.check_schema`, or None for any JSON object (`json_object`). `name` and `strict` are
    the caller's, for engines that pass the format on (a remote upstream)."""

    schema: str | None = None
    name: str = "response"
    strict: bool = False


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    json_output: JsonOutput | None = None
    # None: no log probabilities; k >= 0: each sampled token's, with the k most likely alternatives.
    logprobs: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a message that holds more than text, in order: a text part, or an image given by
    an `https://` or `data:image/...;base64,` URL (OpenAI's `image_url` part). Only runners of
    models the catalog marks `vision` receive image parts; core refuses them for the others."""

    type: str  # "text" | "image_url"
    text: str = ""
    url: str = ""
    detail: str | None = None  # OpenAI's "low" | "high" | "auto", passed on when given


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the assistant made earlier in the conversation (OpenAI's `tool_calls`)."""

    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # system | user | assistant | tool
    content: str  # the message's text (its text parts joined)
    parts: tuple[ContentPart, ...] = ()  # set only when the message carries images
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant message's calls
    tool_call_id: str | None = None  # a tool message: the call it answers

    @property
    def images(self) -> int:
        return sum(1 for part in self.parts if part.type == "image_url")


@dataclass(frozen=True, slots=True)
class ToolFunction:
    """A function the model may call. `parameters` is its JSON Schema as canonical JSON text, so a
    tool set is hashable (runners cache what they build from it) and crosses a process pipe as is."""

    name: str
    description: str | None = None
    parameters: str = '{"type": "object", "properties": {}}'
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolSet:
    """The tools of one chat request and how the model may use them (OpenAI's `tool_choice`):
    `auto` — text or calls; `none` — text only, tools not shown to the model; `required` — at least
    one call (only to `function` when it names one); `parallel` — more than one call per turn."""

    functions: tuple[ToolFunction, ...]
    choice: str = "auto"  # auto | none | required
    function: str | None = None  # the one function a named tool_choice forces
    parallel: bool = True


@dataclass(frozen=True, slots=True)
class ChatParams:
    messages: tuple[ChatMessage, ...]
    sampling: SamplingParams
    # False: the caller wants the whole answer, so a runner may fetch it in one piece (a remote
    # upstream then answers one JSON body instead of an event per token). Deltas are the same.
    stream: bool = True
    tools: ToolSet | None = None


@dataclass(frozen=True, slots=True)
class CompletionParams:
    prompt: str
    sampling: SamplingParams
    suffix: str | None = None  # fill-in-the-middle when set
    stream: bool = True  # as in ChatParams


@dataclass(frozen=True, slots=True)
class PreparedPrompt:
    """A request ready for the engine. `prompt_tokens` is exact for local engines and an estimate
    for remote ones (the upstream's reported usage replaces it when the call settles)."""

    prompt_tokens: int
    sampling: SamplingParams
    payload: Any = None  # engine-specific: token ids, rendered text, or the upstream request body
    exact: bool = True
    # The call's admission class (batchin/admission_pool.py's Priority: 0 interactive … 3 fill) and
    # whether its slot may be taken: set by the caller once admitted, read where API processes
    # share one engine (engine_relay.py), which admits their calls by it.
    priority: int = 0
    preemptible: bool = False


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token: `token` is its share of the text (the tokens of a generation concatenate
    to its text: a character split across tokens goes to the token that completes it), `raw` the
    token's own bytes, `top` the most likely alternatives at that step as (bytes, logprob), best
    first. Log probabilities are the model's, before sampling settings and constraints."""

    token: str
    logprob: float
    raw: bytes
    top: tuple[tuple[bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call as it is generated, in the shape OpenAI streams it: a call's first
    piece has its `id` and `name`, the following ones fragments of its JSON `arguments`."""

    index: int  # which call of this reply (0, 1, ... in order)
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True, init=False)
class TextDelta:
    text: str
    finish_reason: str | None = None  # "stop" | "length" | "tool_calls" on the last delta
    usage: Usage | None = None  # set on the last delta
    logprobs: tuple[TokenLogprob, ...] | None = None  # the tokens of `text`, when asked for
    index: int = 0  # which choice (n > 1): set by core, which runs one generation per choice
    tool_calls: tuple[ToolCallDelta, ...] = ()

    def __init__(
        self,
        text: str,
        finish_reason: str | None = None,
        usage: Usage | None = None,
        logprobs: tuple[TokenLogprob, ...] | None = None,
        index: int = 0,
        tool_calls: tuple[ToolCallDelta, ...] = (),
    ) -> None:
        # One per token. A frozen dataclass's own __init__ sets each field through
        # object.__setattr__; the slots' own setters (bound below) do it in 0.43 µs, not 0.72.
        # Assignment afterwards still raises FrozenInstanceError; replace() still works.
        set_text, set_finish, set_usage, set_logprobs, set_index, set_tools = _DELTA_SETTERS
        set_text(self, text)
        set_finish(self, finish_reason)
        set_usage(self, usage)
        set_logprobs(self, logprobs)
        set_index(self, index)
        set_tools(self, tool_calls)

    def of_choice(self, index: int) -> TextDelta:
        """This delta as choice `index`'s (n > 1: core runs one generation per choice), made
        without `dataclasses.replace`'s per-field work (~1.7 µs a token)."""
        return TextDelta(self.text, self.finish_reason, self.usage, self.logprobs, index, self.tool_calls)


_DELTA_SETTERS = tuple(
    TextDelta.__dict__[name].__set__
    for name in ("text", "finish_reason", "usage", "logprobs", "index", "tool_calls")
)


class EngineUnavailable(Exception):
    """A runner's engine cannot run here (library missing or failing at import, no GPU). Raised by a
    runner's `load()`; the registry shows the model `unavailable` with this message as the reason."""


@dataclass(frozen=True, slots=True)
class RunnerHealth:
    status: str  # always_on | on_demand | loading | unavailable
    reason: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class TextRunner(Protocol):
    """One loaded (or reachable) text model."""

    context_length: int
    supports_fim: bool
    supports_tools: bool  # takes ChatParams.tools (tool calling); core refuses tools otherwise
    max_concurrency: int

    async def prepare_chat(self, params: ChatParams) -> PreparedPrompt: ...

    async def prepare_completion(self, params: CompletionParams) -> PreparedPrompt: ...

    def generate(self, prepared: PreparedPrompt) -> AsyncGenerator[TextDelta, None]: ...

    def health(self) -> RunnerHealth: ...

    async def close(self) -> None: ...
