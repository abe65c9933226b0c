"""Same-run A/B of what one relayed stream event costs the gateway's event loop: a baseline
checkout against this one, as bench/ab_gateway.py runs them (two `batchin serve` pinned to core 0,
the fake upstream and this client on core 1, the order alternating every round).

Each round drives, at each concurrency, streams of 20 tokens and streams of 2 tokens (the same
calls otherwise: `max_tokens` 2 makes the fake upstream stop early) against each side, and reads the
event loop thread's CPU from /proc/PID/schedstat (nanoseconds, not /proc/PID/stat's 10 ms ticks).
The difference between the two, over 18 tokens, is the cost of one relayed event (upstream read,
decoding, the serving core, our SSE chunk and its write); the 20-token figure is a whole stream.
Prints one JSON line: per concurrency the median over rounds of each side's µs per event and ms per
stream, and their ratios (B / A).

    python bench/ab_stream_events.py --base /tmp/base-checkout [--rounds 7] [--streams 160]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.bench_gateway import DELAY_MS, TOKENS, Target, run
from bench.harness import ROOT, ab_figure, batchin_server, fake_upstream_process, remote_catalog

SHORT = 2  # tokens of the short streams


def loop_cpu_ns(pid: int) -> int:
    """CPU time of the process's main thread (the event loop's), in nanoseconds."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def streams_cpu_ms(target: Target, pid: int, *, concurrency: int, count: int, tokens: int) -> float:
    """The event loop's CPU per stream of `tokens` tokens, in milliseconds."""
    before = loop_cpu_ns(pid)
    asyncio.run(run(*target, stream=True, concurrency=concurrency, count=count, max_tokens=tokens))
    return (loop_cpu_ns(pid) - before) / 1e6 / count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--streams", type=int, default=160, help="streams per measurement at c=16")
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})  # the client shares core 1 with the upstream
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    per_event: dict[str, dict[int, list[float]]] = {side: {c: [] for c in levels} for side in sides}
    per_stream: dict[str, dict[int, list[float]]] = {side: {c: [] for c in levels} for side in sides}
    with contextlib.ExitStack() as stack:
        upstream_url, _ = stack.enter_context(fake_upstream_process(core=1, tokens=TOKENS, delay_ms=DELAY_MS))
        catalog = str(remote_catalog(upstream_url))
        targets: dict[str, tuple[Target, int]] = {}
        for side, path in sides.items():
            env = {"BATCHIN_MODELS": catalog, "PYTHONPATH": path}
            server = stack.enter_context(batchin_server(core=0, env=env))
            target: Target = (
                f"{server.base}/v1/chat/completions",
                {"Authorization": f"Bearer {server.api_key}"},
                "remote-bench",
            )
            streams_cpu_ms(target, server.process.pid, concurrency=4, count=40, tokens=TOKENS)  # warm-up
            targets[side] = (target, server.process.pid)
        for round_no in range(args.rounds):
            order = ["A", "B"] if round_no % 2 == 0 else ["B", "A"]
            for concurrency in levels:
                # c=1 runs one stream at a time (~0.1 s each): fewer of them.
                count = max(concurrency, args.streams if concurrency > 1 else args.streams // 4)
                for side in order:
                    target, pid = targets[side]
                    kw = {"concurrency": concurrency, "count": count}
                    long = streams_cpu_ms(target, pid, tokens=TOKENS, **kw)
                    short = streams_cpu_ms(target, pid, tokens=SHORT, **kw)
                    per_stream[side][concurrency].append(long)
                    per_event[side][concurrency].append((long - short) * 1000 / (TOKENS - SHORT))
    result: dict[str, object] = {"bench": "stream_events_ab", "base": sides["A"], "rounds": args.rounds}
    for c in levels:
        result[f"event_c{c}"] = ab_figure(per_event["A"][c], per_event["B"][c], unit="_us", digits=2)
        result[f"stream_c{c}"] = ab_figure(per_stream["A"][c], per_stream["B"][c], unit="_ms")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
