"""Constrained decoding's cost on the embedded SmolLM2 (llama.cpp): decode tokens/s with a JSON
schema (`response_format` json_schema, the grammar checked lazily as the runner does) against free
text, same prompt, same max_tokens, greedy; the two alternate so machine noise hits both. For
comparison, llama-cpp-python's own `generate(grammar=...)`, which masks the whole vocabulary at
every step. Also the time to check a typical schema and build its grammar, first and cached.
Prints one JSON line (goal: schema/free ratio >= 0.8).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchin.models.base import ChatMessage, ChatParams, JsonOutput, SamplingParams
from batchin.models.catalog import load_catalog
from batchin.models.grammars import check_schema, schema_grammar
from batchin.models.llama_cpp import LlamaCppRunner
from batchin.models.registry import ModelRegistry

MODEL = "smollm2-135m-instruct"
PROMPT = "List the orders of a small shop today as JSON: customer, status and the items of each."
MAX_TOKENS = 160
ROUNDS = 5

# A typical client schema: what the openai SDK sends for a pydantic model with a nested list.
ORDERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "orders": {
            "type": "array",
            "minItems": 4,
            "maxItems": 8,
            "items": {"$ref": "#/$defs/Order"},
        }
    },
    "required": ["orders"],
    "additionalProperties": False,
    "$defs": {
        "Order": {
            "type": "object",
            "properties": {
                "customer": {"type": "string", "title": "Customer"},
                "status": {"type": "string", "enum": ["open", "shipped", "closed"]},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "qty": {"type": "integer"}},
                        "required": ["name", "qty"],
                        "additionalProperties": False,
                    },
                },
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
            "required": ["customer", "status", "items", "note"],
            "additionalProperties": False,
        }
    },
}


async def decode_rate(runner: LlamaCppRunner, sampling: SamplingParams) -> tuple[float, int]:
    """Tokens/s from the first delta to the last (the prompt's evaluation excluded)."""
    prepared = await runner.prepare_chat(ChatParams((ChatMessage("user", PROMPT),), sampling))
    first: float | None = None
    tokens = 0
    async for delta in runner.generate(prepared):
        if first is None:
            first = time.perf_counter()
        if delta.usage is not None:
            tokens = delta.usage.completion_tokens
    assert first is not None
    return (tokens - 1) / (time.perf_counter() - first), tokens


def library_grammar_rate(runner: LlamaCppRunner, gbnf: str) -> float:
    """llama-cpp-python's generate() with the same grammar: masked over the whole vocabulary."""
    from llama_cpp import LlamaGrammar

    llama = runner._llama
    assert llama is not None
    template = runner._template
    assert template is not None
    ids = llama.tokenize(
        template.render((ChatMessage("user", PROMPT),)).encode(), add_bos=False, special=True
    )
    llama.reset()
    first: float | None = None
    tokens = 0
    grammar = LlamaGrammar.from_string(gbnf, verbose=False)
    for token in llama.generate(
        ids, top_k=0, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, grammar=grammar
    ):
        tokens += 1
        if first is None:
            first = time.perf_counter()
        if token == llama.token_eos() or tokens >= MAX_TOKENS:
            break
    assert first is not None
    return (tokens - 1) / (time.perf_counter() - first)


def grammar_timings(runner: LlamaCppRunner) -> dict[str, float]:
    import llama_cpp

    variant = {**ORDERS, "title": f"Orders {time.time_ns()}"}  # a schema no cache has seen
    start = time.perf_counter()
    text = check_schema(variant, param="response_format")
    checked = time.perf_counter()
    gbnf = schema_grammar(text)
    built = time.perf_counter()
    check_schema(variant, param="response_format")
    schema_grammar(text)
    cached = time.perf_counter()
    llama = runner._llama
    assert llama is not None
    parse_start = time.perf_counter()
    sampler = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, gbnf.encode(), b"root")
    parsed = time.perf_counter()
    llama_cpp.llama_sampler_free(sampler)
    return {
        "schema_check_ms": round((checked - start) * 1000, 3),
        "grammar_build_ms": round((built - checked) * 1000, 3),
        "grammar_parse_ms": round((parsed - parse_start) * 1000, 3),
        "cached_check_and_build_us": round((cached - built) * 1e6, 1),
        "grammar_rules": gbnf.count("::="),
    }


async def main() -> None:
    registry = ModelRegistry(load_catalog(None), hosted={})  # in process: the runner itself
    await registry.start()
    try:
        runner = await registry.text_runner(MODEL)
        assert isinstance(runner, LlamaCppRunner)
        check_schema({"type": "object"}, param="warm-up")  # imports jsonschema
        schema_grammar(check_schema({"type": "object"}, param="warm-up"))  # imports the converter
        timings = grammar_timings(runner)
        text = check_schema(ORDERS, param="response_format")
        free = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0)
        constrained = SamplingParams(max_tokens=MAX_TOKENS, temperature=0.0, json_output=JsonOutput(text))
        await decode_rate(runner, free)  # warm-up
        free_rates, schema_rates, library_rates, lengths = [], [], [], []
        for _ in range(ROUNDS):
            rate, _tokens = await decode_rate(runner, free)
            free_rates.append(rate)
            rate, tokens = await decode_rate(runner, constrained)
            schema_rates.append(rate)
            lengths.append(tokens)
            library_rates.append(library_grammar_rate(runner, schema_grammar(text)))
        free_rate, schema_rate = statistics.median(free_rates), statistics.median(schema_rates)
        library_rate = statistics.median(library_rates)
        print(
            json.dumps(
                {
                    "bench": "structured",
                    "model": MODEL,
                    "max_tokens": MAX_TOKENS,
                    "rounds": ROUNDS,
                    "free_tokens_per_s": round(free_rate, 1),
                    "schema_tokens_per_s": round(schema_rate, 1),
                    "schema_tokens": lengths,
                    "ratio": round(schema_rate / free_rate, 3),
                    "goal_ratio": 0.8,
                    "library_grammar_tokens_per_s": round(library_rate, 1),
                    "library_ratio": round(library_rate / free_rate, 3),
                    **timings,
                }
            )
        )
    finally:
        await registry.close()


if __name__ == "__main__":
    asyncio.run(main())
