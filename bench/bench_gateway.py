"""Gateway overhead in front of a remote OpenAI-compatible upstream.

A fake upstream (20 tokens, 5 ms apart) runs in its own process; BatchIn runs pinned to one core
with a catalog whose model points at it. The same requests go straight to the upstream (the
baseline) and through BatchIn, non-streaming and streaming, at concurrency 1, 16 and 64.
Figures: BatchIn's CPU per non-streaming request (full path: auth, RPM, reserve, admission,
upstream call, settle, usage log), TTFT added at c=1 (p50), and the c=64 stream p99 ratio.
Prints one JSON line.
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
from bench.harness import batchin_server, cpu_seconds, fake_upstream, percentile, remote_catalog

TOKENS, DELAY_MS = 20, 5.0
PLAN = {1: 40, 16: 160, 64: 384}  # concurrency → requests per measurement


async def run(
    url: str, headers: dict[str, str], model: str, *, stream: bool, concurrency: int, count: int
) -> tuple[list[float], list[float]]:
    """Returns (latencies, ttfts) in seconds."""
    body = {"model": model, "messages": [{"role": "user", "content": "benchmark prompt"}], "max_tokens": 64}
    if stream:
        body["stream"] = True
    latencies: list[float] = []
    ttfts: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    remaining = list(range(count))
    async with httpx.AsyncClient(limits=limits, timeout=60, headers=headers) as client:

        async def worker() -> None:
            while remaining:
                remaining.pop()
                start = time.perf_counter()
                if not stream:
                    response = await client.post(url, json=body)
                    response.raise_for_status()
                else:
                    first: float | None = None
                    async with client.stream("POST", url, json=body) as response:
                        response.raise_for_status()
                        async for line in response.aiter_lines():
                            if first is None and "tok" in line:
                                first = time.perf_counter() - start
                    ttfts.append(first if first is not None else float("nan"))
                latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, ttfts


def main() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client shares core 1 with the upstream; BatchIn has core 0
    results: dict[str, object] = {"bench": "gateway_overhead", "tokens": TOKENS, "token_delay_ms": DELAY_MS}
    with fake_upstream(core=1, tokens=TOKENS, delay_ms=DELAY_MS) as upstream_url:
        catalog = remote_catalog(upstream_url)
        with batchin_server(core=0, env={"BATCHIN_MODELS": str(catalog)}) as server:
            direct = (f"{upstream_url}/chat/completions", {}, "fake-model")
            gateway = (
                f"{server.base}/v1/chat/completions",
                {"Authorization": f"Bearer {server.api_key}"},
                "remote-bench",
            )
            asyncio.run(run(*gateway, stream=True, concurrency=4, count=40))  # warm-up
            asyncio.run(run(*direct, stream=True, concurrency=4, count=40))
            cpu_total, cpu_requests = 0.0, 0
            table: dict[str, dict[str, float]] = {}
            for concurrency, count in PLAN.items():
                for stream in (False, True):
                    mode = "stream" if stream else "plain"
                    d_lat, d_ttft = asyncio.run(
                        run(*direct, stream=stream, concurrency=concurrency, count=count)
                    )
                    before = cpu_seconds(server.process.pid)
                    g_lat, g_ttft = asyncio.run(
                        run(*gateway, stream=stream, concurrency=concurrency, count=count)
                    )
                    cpu = cpu_seconds(server.process.pid) - before
                    if not stream:
                        cpu_total, cpu_requests = cpu_total + cpu, cpu_requests + count
                    row = {
                        "direct_p50_ms": percentile(d_lat, 0.5) * 1000,
                        "gateway_p50_ms": percentile(g_lat, 0.5) * 1000,
                        "direct_p99_ms": percentile(d_lat, 0.99) * 1000,
                        "gateway_p99_ms": percentile(g_lat, 0.99) * 1000,
                        "p99_ratio": percentile(g_lat, 0.99) / percentile(d_lat, 0.99),
                        "gateway_cpu_ms_per_request": cpu * 1000 / count,
                    }
                    if stream:
                        row["ttft_direct_p50_ms"] = percentile(d_ttft, 0.5) * 1000
                        row["ttft_gateway_p50_ms"] = percentile(g_ttft, 0.5) * 1000
                        row["ttft_added_p50_ms"] = row["ttft_gateway_p50_ms"] - row["ttft_direct_p50_ms"]
                    table[f"c{concurrency}_{mode}"] = {k: round(v, 3) for k, v in row.items()}
    results.update(
        {
            "plain_cpu_ms_per_request": round(cpu_total * 1000 / cpu_requests, 3),
            "ttft_added_p50_ms_c1": table["c1_stream"]["ttft_added_p50_ms"],
            "stream_p99_ratio_c64": table["c64_stream"]["p99_ratio"],
            "targets": {
                "plain_cpu_ms_per_request": 1.0,
                "ttft_added_p50_ms_c1": 1.0,
                "stream_p99_ratio_c64": 1.2,
            },
            "runs": table,
        }
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
