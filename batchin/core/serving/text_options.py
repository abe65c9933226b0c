"""What a text request asks of its model beyond the prompt: the engine's sampling parameters, and
the capabilities those need. Both are settled before any engine work: a model that lacks a
capability, or a JSON schema its grammar cannot enforce, is a 400 naming the parameter."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from batchin.core.context import Principal
from batchin.core.permissions import may_use_model
from batchin.errors import InvalidRequest
from batchin.models.base import JsonOutput, SamplingParams
from batchin.models.catalog import GRAMMAR_ENGINES, CatalogEntry
from batchin.models.grammars import check_schema
from batchin.protocol.structured import (
    ResponseFormat,
    ResponseFormatJsonObject,
    ResponseFormatJsonSchema,
    ResponseFormatText,
    TextFormat,
)
from batchin.protocol.text import ChatCompletionRequest, SamplingFields

__all__ = ["json_output", "require_capabilities", "sampling_params"]


def require_capabilities(
    request: SamplingFields,
    entry: CatalogEntry,
    catalog: Callable[[], Iterable[CatalogEntry]],
    principal: Principal,
    *,
    renamed: dict[str, str] | None = None,
) -> None:
    """400 for the first parameter that needs what the model lacks, naming the models (this key may
    call) that have it (`catalog()`: read only then, not on every call). `renamed`: the caller's
    name for a parameter (the Responses API's `text.format` for `response_format`)."""
    for capability, param in request.capability_params():
        if capability in entry.served_capabilities:
            continue
        name = (renamed or {}).get(param, param)
        able = [e.id for e in catalog() if _serves(e, capability, principal)]
        where = f"models that do: {', '.join(able)}" if able else "no model here does"
        raise InvalidRequest(
            f"Model '{entry.id}' does not support {name} ({capability}); {where}.", param=name
        )


def json_output(
    fmt: ResponseFormat | TextFormat | None, *, param: str, grammar: bool = True
) -> JsonOutput | None:
    """The engine's constraint for a response format (None for text); the schema is checked here
    (`grammar`: for an engine that enforces it with a grammar)."""
    if fmt is None or isinstance(fmt, ResponseFormatText):
        return None
    if isinstance(fmt, ResponseFormatJsonObject):
        return JsonOutput()
    spec = fmt.json_schema if isinstance(fmt, ResponseFormatJsonSchema) else fmt
    text = check_schema(spec.schema_, param=param, grammar=grammar)
    return JsonOutput(schema=text, name=spec.name, strict=bool(spec.strict))


def sampling_params(
    request: SamplingFields, entry: CatalogEntry, max_tokens: int, *, format_param: str = "response_format"
) -> SamplingParams:
    fmt = request.response_format if isinstance(request, ChatCompletionRequest) else None
    grammar = entry.engine in GRAMMAR_ENGINES
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        stop=request.stop_sequences(),
        seed=request.seed,
        json_output=json_output(fmt, param=format_param, grammar=grammar),
        logprobs=request.logprob_count(),
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logit_bias=request.logit_bias_pairs(),
    )


def _serves(entry: CatalogEntry, capability: str, principal: Principal) -> bool:
    return capability in entry.served_capabilities and may_use_model(principal, *entry.names)
