"""chat, complete, respond: the same core calls (admission, ledger, audit, trace) as
/v1/chat/completions, /v1/completions and /v1/responses, returning the same result models."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any, Self, TypeVar

from pydantic import BaseModel, Field

from batchin.core.serving import text_serving
from batchin.core.serving.inference import InferenceService
from batchin.core.serving.text_producer import StartedText
from batchin.mcp_server.caller import current, uses
from batchin.protocol.chat_messages import ChatMessageIn
from batchin.protocol.common import validate
from batchin.protocol.responses import (
    ResponseCreateRequest,
    ResponseInputItem,
    ResponseObject,
    ResponseOutputMessage,
)
from batchin.protocol.structured import ResponseFormat, ResponseFormatJsonSchema
from batchin.protocol.text import ChatCompletion, ChatCompletionRequest, Completion, CompletionRequest
from batchin.protocol.tools import (
    ChatTool,
    ChatToolChoice,
    ResponseFunctionCall,
    ResponseFunctionTool,
    ResponseToolChoice,
)
from batchin.services import Services
from batchin.tools.registry import ToolSpec

R = TypeVar("R", bound=BaseModel)

Model = Annotated[
    str, Field(description="A text model id from list_models (or the batchin://models resource).")
]
MaxTokens = Annotated[int | None, Field(description="Upper bound on generated tokens.", ge=1)]
Temperature = Annotated[
    float | None, Field(description="Sampling temperature 0-2; 0 is (near) deterministic.", ge=0, le=2)
]
TopP = Annotated[float | None, Field(description="Nucleus sampling mass in (0, 1].", gt=0, le=1)]
Stop = Annotated[str | list[str] | None, Field(description="Up to 4 sequences that end the generation.")]
Seed = Annotated[int | None, Field(description="Seed for reproducible sampling.")]
Format = Annotated[
    Annotated[ResponseFormat, Field(discriminator="type")] | None,
    Field(
        description="Structured output: {type: json_object} for any JSON object, or {type: json_schema, "
        "json_schema: {name, schema, strict}} for JSON matching the schema (enforced token by token on "
        "embedded models; see a model's capabilities). Omitted: plain text."
    ),
]
PromptVersion = Annotated[
    str | None,
    Field(
        description="The prompt version this call runs, '<registry>@<version>' (e.g. support@v2), for the "
        "prompt registry; omitted: derived from the system prompt."
    ),
]
ParallelToolCalls = Annotated[
    bool | None, Field(description="Allow more than one tool call in one reply (default true).")
]
PromptRegistry = Annotated[
    str | None,
    Field(description="The registry a derived prompt version belongs to (keeps its history together)."),
]


def _given(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _format(response_format: ResponseFormat | None) -> dict[str, Any]:
    return {} if response_format is None else {"response_format": _dumped(response_format)}


def _text_format(response_format: ResponseFormat | None) -> dict[str, Any]:
    """The same format in the Responses API's form (`text.format`, the schema's fields flattened)."""
    if response_format is None:
        return {}
    if isinstance(response_format, ResponseFormatJsonSchema):
        return {"text": {"format": {"type": "json_schema", **_dumped(response_format.json_schema)}}}
    return {"text": {"format": _dumped(response_format)}}


def _dumped(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _prompt_metadata(prompt_version: str | None, prompt_registry: str | None) -> dict[str, Any]:
    """The same request metadata an HTTP caller sends to name its prompt version."""
    metadata = _given(prompt_version=prompt_version, prompt_registry=prompt_registry)
    return {"metadata": metadata} if metadata else {}


@dataclass(frozen=True, slots=True)
class TextToolDeps:
    """What chat, complete and respond use."""

    inference: InferenceService

    @classmethod
    def from_services(cls, services: Services) -> Self:
        return cls(inference=services.inference)


async def _run(
    start: Callable[[], Awaitable[StartedText]], whole: Callable[[StartedText], Awaitable[R]]
) -> R:
    """Generate the whole answer. A cancelled tool call (the client's notifications/cancelled)
    cancels this task, and closing the generation stops the engine and settles what was made."""
    call = current()
    started = await start()
    try:
        result = await whole(started)
    finally:
        await started.generation.aclose()
    call.add_receipt(started.audit_headers())
    return result


async def chat(
    model: Model,
    messages: Annotated[
        list[ChatMessageIn],
        Field(
            description="The conversation, oldest first: {role: system|user|assistant|tool, content}; an "
            "assistant turn may carry tool_calls, a tool message answers one by tool_call_id.",
            min_length=1,
        ),
    ],
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    stop: Stop = None,
    seed: Seed = None,
    response_format: Format = None,
    tools: Annotated[
        list[ChatTool] | None,
        Field(
            description="Functions the model may call: "
            "{type: function, function: {name, description, parameters}}."
        ),
    ] = None,
    tool_choice: Annotated[
        ChatToolChoice | None,
        Field(
            description="auto (default with tools) | none | required | {type: function, function: {name}}."
        ),
    ] = None,
    parallel_tool_calls: ParallelToolCalls = None,
    prompt_version: PromptVersion = None,
    prompt_registry: PromptRegistry = None,
    deps: TextToolDeps = uses(TextToolDeps),
) -> ChatCompletion:
    """Chat completion: answer the conversation's last message. The text content is the assistant's
    answer; the structured content is the OpenAI chat.completion object (choices[0].message, usage
    in tokens; with tools, choices[0].message.tool_calls holds the calls the model made and
    finish_reason is `tool_calls`). Billed per token."""
    call = current()
    body = validate(
        ChatCompletionRequest,
        _given(model=model, messages=messages, max_tokens=max_tokens, temperature=temperature, top_p=top_p)
        | _given(
            stop=stop,
            seed=seed,
            tools=tools,
            tool_choice=tool_choice,
            parallel_tool_calls=parallel_tool_calls,
        )
        | _format(response_format)
        | _prompt_metadata(prompt_version, prompt_registry),
    )
    return await _run(lambda: deps.inference.start_chat(call.ctx, body), text_serving.chat_completion)


async def complete(
    model: Model,
    prompt: Annotated[str, Field(description="Text to continue (for FIM: the code before the gap).")],
    suffix: Annotated[
        str | None,
        Field(description="Fill-in-the-middle: the text after the gap; the model writes what goes between."),
    ] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    stop: Stop = None,
    seed: Seed = None,
    prompt_version: PromptVersion = None,
    deps: TextToolDeps = uses(TextToolDeps),
) -> Completion:
    """Text completion, or fill-in-the-middle when `suffix` is given (models whose catalog entry has
    FIM tokens). The text content is the generated text; the structured content is the OpenAI
    text_completion object (choices[0].text)."""
    call = current()
    body = validate(
        CompletionRequest,
        _given(model=model, prompt=prompt, suffix=suffix, max_tokens=max_tokens, temperature=temperature)
        | _given(top_p=top_p, stop=stop, seed=seed)
        | _prompt_metadata(prompt_version, None),
    )
    return await _run(lambda: deps.inference.start_completion(call.ctx, body), text_serving.completion)


async def respond(
    model: Model,
    input: Annotated[
        str | list[ResponseInputItem],
        Field(
            description="A user message as a string, or a list of items: {role, content} messages, "
            "{type: function_call, call_id, name, arguments} calls made earlier and "
            "{type: function_call_output, call_id, output} their results."
        ),
    ],
    instructions: Annotated[str | None, Field(description="System instructions for this response.")] = None,
    max_output_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    response_format: Format = None,
    tools: Annotated[
        list[ResponseFunctionTool] | None,
        Field(description="Functions the model may call: {type: function, name, description, parameters}."),
    ] = None,
    tool_choice: Annotated[
        ResponseToolChoice | None,
        Field(description="auto (default with tools) | none | required | {type: function, name}."),
    ] = None,
    parallel_tool_calls: ParallelToolCalls = None,
    prompt_version: PromptVersion = None,
    prompt_registry: PromptRegistry = None,
    deps: TextToolDeps = uses(TextToolDeps),
) -> ResponseObject:
    """OpenAI Responses API. The text content is the answer; the structured content is the `response`
    object (output[0].content[0].text; status `incomplete` when max_output_tokens cut it short; with
    tools, the calls the model made are `function_call` items in output: call_id, name, arguments)."""
    call = current()
    body = validate(
        ResponseCreateRequest,
        _given(model=model, input=input, instructions=instructions, max_output_tokens=max_output_tokens)
        | _given(temperature=temperature, top_p=top_p, tools=tools, tool_choice=tool_choice)
        | _given(parallel_tool_calls=parallel_tool_calls)
        | _text_format(response_format)
        | _prompt_metadata(prompt_version, prompt_registry),
    )
    return await _run(
        lambda: deps.inference.start_response(call.ctx, body),
        lambda started: text_serving.response_object(started, body),
    )


def _answer(text: str, finish_reason: str | None) -> str:
    if text:
        return text
    return f"(no text generated; finish_reason: {finish_reason or 'unknown'})"


def _choices(answers: list[str]) -> str:
    return answers[0] if len(answers) == 1 else "\n\n".join(f"[{i}] {a}" for i, a in enumerate(answers))


def chat_text(result: ChatCompletion) -> str:
    """The assistant's message (each choice's, when several were asked for), with the calls it made."""
    answers = []
    for choice in result.choices:
        message = choice.message
        calls = [_call_line(c.function.name, c.function.arguments, c.id) for c in message.tool_calls or ()]
        answers.append(_with_calls(message.content or "", calls, choice.finish_reason))
    return _choices(answers)


def _with_calls(text: str, calls: list[str], finish_reason: str | None) -> str:
    if not calls:
        return _answer(text, finish_reason)
    return "\n".join([text, *calls]) if text else "\n".join(calls)


def _call_line(name: str, arguments: str, call_id: str) -> str:
    return f"Called {name}({arguments}) as {call_id}."


def completion_text(result: Completion) -> str:
    return _choices([_answer(choice.text, choice.finish_reason) for choice in result.choices])


def response_text(result: ResponseObject) -> str:
    text = "".join(
        part.text
        for item in result.output
        if isinstance(item, ResponseOutputMessage)
        for part in item.content
    )
    calls = [
        _call_line(item.name, item.arguments, item.call_id)
        for item in result.output
        if isinstance(item, ResponseFunctionCall)
    ]
    if calls:
        return _with_calls(text, calls, result.status)
    if result.status == "incomplete":
        cut = "(incomplete: max_output_tokens reached)"
        return f"{text}\n{cut}" if text else cut
    return _answer(text, result.status)


TOOLS = [
    ToolSpec(chat, "Chat completion", scope="inference", summary=chat_text),
    ToolSpec(complete, "Text completion / fill-in-the-middle", scope="inference", summary=completion_text),
    ToolSpec(respond, "Responses API", scope="inference", summary=response_text),
]
