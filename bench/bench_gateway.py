"""Gateway overhead in front of a remote OpenAI-compatible upstream.

A fake upstream (20 tokens, 5 ms apart) runs in its own process; BatchIn runs pinned to one core
with a catalog whose model points at it. The same requests go straight to the upstream (the
baseline, "direct") and through BatchIn, non-streaming and streaming, at concurrency 1, 16 and 64.
CPU is read from /proc for both processes: BatchIn's per call is its full path (auth, RPM,
reservation, admission, upstream call, settlement, usage log, signed receipt, log append, trace);
"direct" is the fake upstream's own CPU per call, the floor any server answering the call pays.
Then 32 streaming readers, 8 of them slow (50 ms per event), against 32 fast ones: the fast
readers' TTFT p50 ratio, direct and through BatchIn.

`table` holds issue 16's figures, each with BatchIn's value, direct's, and their ratio from this
run (the machine is shared and noisy: compare ratios within one run, never across runs).
`--scale 0.5` halves the request counts for a quicker, noisier run. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_slow_consumers import reader
from bench.harness import batchin_server, cpu_seconds, fake_upstream_process, percentile, remote_catalog

TOKENS, DELAY_MS = 20, 5.0
PLAN = {1: 40, 16: 160, 64: 384}  # concurrency → requests per measurement
READERS, SLOW = 32, 8  # slow-reader round: 8 of 32 readers sleep per event (bench_slow_consumers)
Target = tuple[str, dict[str, str], str]  # url, headers, model


async def run(
    url: str,
    headers: dict[str, str],
    model: str,
    *,
    stream: bool,
    concurrency: int,
    count: int,
    max_tokens: int = 64,
) -> tuple[list[float], list[float]]:
    """Returns (latencies, ttfts) in seconds. The fake upstream sends min(its tokens, max_tokens)."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "benchmark prompt"}],
        "max_tokens": max_tokens,
    }
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


@dataclass
class Measured:
    """One mode at one concurrency, for one target."""

    latencies: list[float]
    ttfts: list[float]
    wall: float
    cpu: float  # seconds of the serving process (BatchIn, or the upstream for direct)

    def per_call_cpu_ms(self) -> float:
        return self.cpu * 1000 / len(self.latencies)

    def per_second(self) -> float:
        return len(self.latencies) / self.wall


def measure(target: Target, pid: int, *, stream: bool, concurrency: int, count: int) -> Measured:
    before, start = cpu_seconds(pid), time.perf_counter()
    latencies, ttfts = asyncio.run(run(*target, stream=stream, concurrency=concurrency, count=count))
    return Measured(latencies, ttfts, time.perf_counter() - start, cpu_seconds(pid) - before)


async def slow_round(target: Target, *, with_slow: bool) -> list[float]:
    """The fast readers' TTFTs among 32 concurrent streams (8 slow ones when `with_slow`)."""
    url, headers, model = target
    body: dict[str, object] = {
        "model": model,
        "messages": [{"role": "user", "content": "go"}],
        "max_tokens": 64,
        "stream": True,
    }
    limits = httpx.Limits(max_connections=READERS, max_keepalive_connections=READERS)
    async with httpx.AsyncClient(limits=limits, timeout=120, headers=headers) as client:
        flags = [with_slow and i < SLOW for i in range(READERS)]
        results = await asyncio.gather(*(reader(client, url, body, slow) for slow in flags))
    return [ttft for (ttft, _), slow in zip(results, flags, strict=True) if not slow]


def slow_reader_ratio(target: Target, rounds: int) -> float:
    """Fast readers' TTFT p50 with 8 slow readers over the same without (rounds alternate)."""
    base: list[float] = []
    test: list[float] = []
    for _ in range(rounds):
        base += asyncio.run(slow_round(target, with_slow=False))
        test += asyncio.run(slow_round(target, with_slow=True))
    return percentile(test, 0.5) / percentile(base, 0.5)


def figure(gateway: float, direct: float) -> dict[str, float]:
    return {"batchin": round(gateway, 3), "direct": round(direct, 3), "ratio": round(gateway / direct, 2)}


def issue_table(
    runs: dict[tuple[int, bool], tuple[Measured, Measured]], slow: tuple[float, float]
) -> dict[str, object]:
    """Issue 16's table from this run: (gateway, direct) per (concurrency, stream)."""

    def cpu(stream: bool) -> dict[str, dict[str, float]]:
        return {
            f"c{c}": figure(g.per_call_cpu_ms(), d.per_call_cpu_ms())
            for (c, s), (g, d) in runs.items()
            if s == stream
        }

    chat1_g, chat1_d = runs[(1, False)]
    chat16_g, chat16_d = runs[(16, False)]
    stream1_g, stream1_d = runs[(1, True)]
    stream64_g, stream64_d = runs[(64, True)]
    chat_cpu_c16 = chat16_g.per_call_cpu_ms()
    return {
        "chat_cpu_ms_per_request": cpu(False),
        "chat_added_p50_ms_c1": round(
            (percentile(chat1_g.latencies, 0.5) - percentile(chat1_d.latencies, 0.5)) * 1000, 3
        ),
        # Measured req/s at c=16 is bound by the upstream's 100 ms per call; what one core could
        # carry is 1000 / CPU ms per call (BatchIn runs pinned to one core).
        "chat_req_per_s_c16": figure(chat16_g.per_second(), chat16_d.per_second()),
        "chat_req_per_s_one_core_by_cpu_c16": round(1000 / chat_cpu_c16, 1),
        "stream_cpu_ms_per_20_token_stream": cpu(True),
        "stream_ttft_added_p50_ms_c1": round(
            (percentile(stream1_g.ttfts, 0.5) - percentile(stream1_d.ttfts, 0.5)) * 1000, 3
        ),
        "streams_per_s_c64": figure(stream64_g.per_second(), stream64_d.per_second()),
        "slow_readers_fast_ttft_ratio": {"batchin": round(slow[0], 3), "direct": round(slow[1], 3)},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the request counts")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client shares core 1 with the upstream; BatchIn has core 0
    results: dict[str, object] = {"bench": "gateway_overhead", "tokens": TOKENS, "token_delay_ms": DELAY_MS}
    measured: dict[tuple[int, bool], tuple[Measured, Measured]] = {}
    with fake_upstream_process(core=1, tokens=TOKENS, delay_ms=DELAY_MS) as (upstream_url, upstream):
        catalog = remote_catalog(upstream_url)
        with batchin_server(core=0, env={"BATCHIN_MODELS": str(catalog)}) as server:
            direct: Target = (f"{upstream_url}/chat/completions", {}, "fake-model")
            gateway: Target = (
                f"{server.base}/v1/chat/completions",
                {"Authorization": f"Bearer {server.api_key}"},
                "remote-bench",
            )
            asyncio.run(run(*gateway, stream=True, concurrency=4, count=40))  # warm-up
            asyncio.run(run(*direct, stream=True, concurrency=4, count=40))
            for concurrency, planned in PLAN.items():
                count = max(concurrency, int(planned * args.scale))
                for stream in (False, True):
                    d = measure(direct, upstream.pid, stream=stream, concurrency=concurrency, count=count)
                    g = measure(
                        gateway, server.process.pid, stream=stream, concurrency=concurrency, count=count
                    )
                    measured[(concurrency, stream)] = (g, d)
            rounds = max(1, round(3 * args.scale))
            slow = (slow_reader_ratio(gateway, rounds), slow_reader_ratio(direct, rounds))
    table: dict[str, dict[str, float]] = {}
    for (concurrency, stream), (g, d) in measured.items():
        row = {
            "direct_p50_ms": percentile(d.latencies, 0.5) * 1000,
            "gateway_p50_ms": percentile(g.latencies, 0.5) * 1000,
            "direct_p99_ms": percentile(d.latencies, 0.99) * 1000,
            "gateway_p99_ms": percentile(g.latencies, 0.99) * 1000,
            "p99_ratio": percentile(g.latencies, 0.99) / percentile(d.latencies, 0.99),
            "gateway_cpu_ms_per_request": g.per_call_cpu_ms(),
            "direct_cpu_ms_per_request": d.per_call_cpu_ms(),
        }
        if stream:
            row["ttft_direct_p50_ms"] = percentile(d.ttfts, 0.5) * 1000
            row["ttft_gateway_p50_ms"] = percentile(g.ttfts, 0.5) * 1000
            row["ttft_added_p50_ms"] = row["ttft_gateway_p50_ms"] - row["ttft_direct_p50_ms"]
        table[f"c{concurrency}_{'stream' if stream else 'plain'}"] = {k: round(v, 3) for k, v in row.items()}
    plain = [g for (_, stream), (g, _) in measured.items() if not stream]
    results.update(
        {
            "plain_cpu_ms_per_request": round(
                sum(g.cpu for g in plain) * 1000 / sum(len(g.latencies) for g in plain), 3
            ),
            "ttft_added_p50_ms_c1": table["c1_stream"]["ttft_added_p50_ms"],
            "stream_p99_ratio_c64": table["c64_stream"]["p99_ratio"],
            "table": issue_table(measured, slow),
            "targets": {
                "plain_cpu_ms_per_request": 1.0,
                "ttft_added_p50_ms_c1": 1.0,
                "stream_p99_ratio_c64": 1.2,
                "issue16_chat_cpu_ms_per_request": 0.5,
                "issue16_chat_added_p50_ms_c1": 0.5,
                "issue16_chat_req_per_s_one_core": 2000,
                "issue16_stream_cpu_ms_per_20_token_stream": 1.5,
                "issue16_stream_ttft_added_p50_ms_c1": 0.5,
                "issue16_streams_per_s_c64_ratio": 0.9,
                "issue16_slow_readers_fast_ttft_ratio": 1.05,
            },
            "runs": table,
        }
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
