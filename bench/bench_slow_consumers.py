"""Slow-consumer isolation: 32 concurrent stream readers through BatchIn in front of a fake
upstream (200 tokens, 2 ms apart); in the test run 8 of them sleep 50 ms per event. The fast
readers' TTFT p50 (and their completion p50) must move by < 5% against a baseline run where all
32 read at full speed. Rounds alternate baseline/test to spread machine noise. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.harness import batchin_server, fake_upstream, percentile, remote_catalog

READERS, SLOW, SLOW_SLEEP = 32, 8, 0.05
TOKENS, DELAY_MS = 200, 2.0
ROUNDS = 3


async def reader(
    client: httpx.AsyncClient, url: str, body: dict[str, object], slow: bool
) -> tuple[float, float]:
    start = time.perf_counter()
    first = float("nan")
    async with client.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if first != first and "tok" in line:  # NaN until the first token
                first = time.perf_counter() - start
            if slow and line.startswith("data:"):
                await asyncio.sleep(SLOW_SLEEP)
    return first, time.perf_counter() - start


async def round_(base: str, key: str, *, with_slow: bool) -> tuple[list[float], list[float]]:
    body = {
        "model": "remote-bench",
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": TOKENS,
        "stream": True,
    }
    limits = httpx.Limits(max_connections=READERS, max_keepalive_connections=READERS)
    async with httpx.AsyncClient(
        limits=limits, timeout=120, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        url = f"{base}/v1/chat/completions"
        slow_flags = [with_slow and i < SLOW for i in range(READERS)]
        results = await asyncio.gather(*(reader(client, url, body, slow) for slow in slow_flags))
    fast = [r for r, slow in zip(results, slow_flags, strict=True) if not slow]
    return [r[0] for r in fast], [r[1] for r in fast]


def main() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    base_ttft: list[float] = []
    test_ttft: list[float] = []
    base_total: list[float] = []
    test_total: list[float] = []
    with fake_upstream(core=1, tokens=TOKENS, delay_ms=DELAY_MS) as upstream_url:
        catalog = remote_catalog(upstream_url)
        with batchin_server(core=0, env={"BATCHIN_MODELS": str(catalog)}) as server:
            asyncio.run(round_(server.base, server.api_key, with_slow=False))  # warm-up
            for _ in range(ROUNDS):
                ttft, total = asyncio.run(round_(server.base, server.api_key, with_slow=False))
                base_ttft += ttft
                base_total += total
                ttft, total = asyncio.run(round_(server.base, server.api_key, with_slow=True))
                test_ttft += ttft
                test_total += total
    b50, t50 = percentile(base_ttft, 0.5), percentile(test_ttft, 0.5)
    print(
        json.dumps(
            {
                "bench": "slow_consumers",
                "readers": READERS,
                "slow_readers": SLOW,
                "slow_sleep_ms": SLOW_SLEEP * 1000,
                "fast_ttft_p50_ms_baseline": round(b50 * 1000, 2),
                "fast_ttft_p50_ms_with_slow": round(t50 * 1000, 2),
                "ttft_p50_change": round((t50 - b50) / b50, 4),
                "fast_total_p50_ms_baseline": round(statistics.median(base_total) * 1000, 1),
                "fast_total_p50_ms_with_slow": round(statistics.median(test_total) * 1000, 1),
                "target_abs_change": 0.05,
            }
        )
    )


if __name__ == "__main__":
    main()
