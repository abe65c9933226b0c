"""Embedded runner throughput: decode tokens/s of SmolLM2 through BatchIn's HTTP API (streaming)
against llama-cpp-python called directly on the same prompt, greedy, same max_tokens.
Both runs use the same GGUF and thread count; they alternate so machine noise hits both.
Prints one JSON line (target: ratio ≥ 0.9).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server

MODEL = "smollm2-135m-instruct"
PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
MAX_TOKENS = 200
ROUNDS = 3


def weights_path() -> Path:
    from batchin.models.catalog import load_catalog
    from batchin.models.weights import resolve_weights

    entry = load_catalog(None).get(MODEL)
    if entry is None or entry.weights is None:
        raise SystemExit(f"{MODEL} is not in the built-in catalog")
    return Path(resolve_weights(entry.weights.path, entry.base_dir))


def direct_tokens_per_second(llama: object) -> float:
    start = time.perf_counter()
    first: float | None = None
    tokens = 0
    for chunk in llama.create_chat_completion(  # type: ignore[attr-defined]
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=MAX_TOKENS,
        temperature=0.0,
        stream=True,
    ):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if first is None:
                first = time.perf_counter()
    end = time.perf_counter()
    return (tokens - 1) / (end - (first or start))


async def served_tokens_per_second(base: str, key: str) -> float:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
    }
    first: float | None = None
    tokens = 0
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream(
            "POST", f"{base}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as response,
    ):
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"content":"' in line and '"content":""' not in line:
                tokens += 1
                if first is None:
                    first = time.perf_counter()
    return (tokens - 1) / (time.perf_counter() - (first or 0))


def main() -> None:
    from llama_cpp import Llama

    threads = os.cpu_count() or 1
    llama = Llama(model_path=str(weights_path()), n_ctx=2048, n_threads=threads, verbose=False)
    direct: list[float] = []
    served: list[float] = []
    with batchin_server(core=-1) as server:
        for _ in range(ROUNDS):
            direct.append(direct_tokens_per_second(llama))
            served.append(asyncio.run(served_tokens_per_second(server.base, server.api_key)))
    best_direct, best_served = max(direct), max(served)
    print(
        json.dumps(
            {
                "bench": "embedded_runner",
                "model": MODEL,
                "max_tokens": MAX_TOKENS,
                "threads": threads,
                "direct_tokens_per_s": round(best_direct, 1),
                "served_tokens_per_s": round(best_served, 1),
                "ratio": round(best_served / best_direct, 3),
                "target_ratio": 0.9,
                "direct_runs": [round(v, 1) for v in direct],
                "served_runs": [round(v, 1) for v in served],
            }
        )
    )


if __name__ == "__main__":
    main()
