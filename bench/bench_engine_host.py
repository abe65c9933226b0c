"""The IPC hop of the engine worker (engine_host.py): SmolLM2 on llama.cpp in-process (the runner
called directly) against the same model behind HostedTextRunner (its worker process), in one run,
alternating so machine noise hits both. c=1, greedy.

    ttft_added_ms_p50    p50 time-to-first-token through the worker minus in-process (target ≤ 1 ms)
    tps_ratio            served / direct decode tokens per second (target ≥ 0.95)
    restart_s_p50        SIGKILL of the worker → the next call's first token, through the supervisor's
                         backoff (0.5 s after a first death), a fresh process and the model's load

Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODEL = "smollm2-135m-instruct"
ROUNDS = 30
DECODE_TOKENS = 200


async def ttft(runner: Any) -> float:
    from batchin.models.base import ChatMessage, ChatParams, SamplingParams

    sampling = SamplingParams(max_tokens=1, temperature=0.0)
    params = ChatParams((ChatMessage("user", "Name a colour."),), sampling)
    prepared = await runner.prepare_chat(params)
    started = time.perf_counter()
    async for delta in runner.generate(prepared):
        if delta.text or delta.finish_reason:
            first = time.perf_counter() - started
            break
    return first


async def tokens_per_second(runner: Any) -> float:
    from batchin.models.base import CompletionParams, SamplingParams

    params = CompletionParams("1, 2, 3, 4,", SamplingParams(max_tokens=DECODE_TOKENS, temperature=0.0))
    prepared = await runner.prepare_completion(params)
    first: float | None = None
    count = 0
    async for _delta in runner.generate(prepared):
        if first is None:
            first = time.perf_counter()
        count += 1
    assert first is not None
    return (count - 1) / (time.perf_counter() - first)


async def restart_seconds(runner: Any) -> float:
    """Kill the serving worker, then time until a call is answered again."""
    worker = runner.worker
    started = time.perf_counter()
    os.kill(worker.pid, signal.SIGKILL)
    while runner.worker is worker or runner.worker is None:  # the death noticed, a new one up
        await asyncio.sleep(0.005)
    await ttft(runner)
    return time.perf_counter() - started


async def main() -> None:
    from batchin.models.catalog import load_catalog
    from batchin.models.registry import ModelRegistry

    direct_registry = ModelRegistry(load_catalog(), hosted={})
    # The default restart policy, except that deaths are forgotten at once: each of the bench's kills
    # is then a first death (0.5 s backoff), not the start of a crash loop.
    catalog = load_catalog()
    forgetful = {"supervisor": {"crash_loop_window": 0.001}}
    entries = tuple(
        e.model_copy(update={"engine_options": {**e.engine_options, **forgetful}}) if e.id == MODEL else e
        for e in catalog.entries
    )
    hosted_registry = ModelRegistry(catalog.model_copy(update={"entries": entries}))
    runners = {
        "direct": await direct_registry.text_runner(MODEL),
        "served": await hosted_registry.text_runner(MODEL),
    }
    ttfts: dict[str, list[float]] = {name: [] for name in runners}
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for runner in runners.values():  # warm-up
        await ttft(runner)
    for _ in range(ROUNDS):
        for name, runner in runners.items():
            ttfts[name].append(await ttft(runner))
    for _ in range(3):
        for name, runner in runners.items():
            rates[name].append(await tokens_per_second(runner))
    restarts = []
    for _ in range(3):
        restarts.append(await restart_seconds(runners["served"]))
    direct_ms = statistics.median(ttfts["direct"]) * 1000
    served_ms = statistics.median(ttfts["served"]) * 1000
    direct_tps, served_tps = statistics.median(rates["direct"]), statistics.median(rates["served"])
    print(
        json.dumps(
            {
                "bench": "engine_host",
                "rounds": ROUNDS,
                "ttft_direct_ms_p50": round(direct_ms, 3),
                "ttft_served_ms_p50": round(served_ms, 3),
                "ttft_added_ms_p50": round(served_ms - direct_ms, 3),
                "direct_tokens_per_second": round(direct_tps, 1),
                "served_tokens_per_second": round(served_tps, 1),
                "tps_ratio": round(served_tps / direct_tps, 3),
                "restart_s_p50": round(statistics.median(restarts), 3),
            }
        )
    )
    await hosted_registry.close()
    await direct_registry.close()


if __name__ == "__main__":
    asyncio.run(main())
