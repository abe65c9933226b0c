"""Tool calling on the embedded default model (SmolLM2, llama.cpp, in process): decode tokens/s of a
grammar-held call (tool_choice required) against free text on the same prompt with the same tools
shown (tool_choice auto, where SmolLM2 answers in text), greedy, alternating so machine noise hits
both; and the cost of building a tool set's grammar, cold and cached. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchin.models.base import ChatMessage, ChatParams, SamplingParams, ToolFunction, ToolSet
from batchin.models.catalog import load_catalog
from batchin.models.registry import ModelRegistry
from batchin.models.tool_grammar import tool_call_grammar

MODEL = "smollm2-135m-instruct"
ROUNDS = 3
PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
    },
    "required": ["city", "unit", "days"],
}
FUNCTIONS = (ToolFunction("get_weather", "Weather forecast for a city", json.dumps(PARAMETERS)),)
ASK = (ChatMessage("user", "What's the weather in Paris over the next three days?"),)


async def tokens_per_second(runner: object, tools: ToolSet) -> tuple[float, int]:
    params = ChatParams(ASK, SamplingParams(max_tokens=64, temperature=0.0), tools=tools)
    prepared = await runner.prepare_chat(params)  # type: ignore[attr-defined]
    first: float | None = None
    tokens = 0
    async for delta in runner.generate(prepared):  # type: ignore[attr-defined]
        if first is None and (delta.text or delta.tool_calls):
            first = time.perf_counter()
        if delta.usage is not None:
            tokens = delta.usage.completion_tokens
    end = time.perf_counter()
    return (tokens - 1) / (end - (first or end) or 1e-9), tokens


def grammar_costs() -> tuple[float, float]:
    tool_call_grammar.cache_clear()
    tools = ToolSet(FUNCTIONS, choice="required")
    start = time.perf_counter()
    tool_call_grammar(tools)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(1000):
        tool_call_grammar(tools)
    return cold * 1000, (time.perf_counter() - start) / 1000 * 1e6


async def main() -> None:
    registry = ModelRegistry(load_catalog(None), hosted={})
    await registry.start()
    try:
        runner = await registry.text_runner(MODEL)
        cold_ms, cached_us = grammar_costs()
        free: list[float] = []
        held: list[float] = []
        held_tokens = free_tokens = 0
        for _ in range(ROUNDS):
            rate, free_tokens = await tokens_per_second(runner, ToolSet(FUNCTIONS))
            free.append(rate)
            rate, held_tokens = await tokens_per_second(
                runner, ToolSet(FUNCTIONS, choice="required", parallel=False)
            )
            held.append(rate)
    finally:
        await registry.close()
    best_free, best_held = max(free), max(held)
    print(
        json.dumps(
            {
                "bench": "tool_calls",
                "model": MODEL,
                "free_text_tokens_per_s": round(best_free, 1),
                "tool_call_tokens_per_s": round(best_held, 1),
                "ratio": round(best_held / best_free, 3),
                "free_text_tokens": free_tokens,
                "tool_call_tokens": held_tokens,
                "grammar_build_ms": round(cold_ms, 2),
                "grammar_cached_us": round(cached_us, 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
