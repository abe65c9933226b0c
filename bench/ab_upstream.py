"""Same-run A/B of the remote text runner's upstream client alone: a baseline checkout's
`batchin/` against this one's, each imported in its own child process (on uvloop, as `batchin
serve` runs), calling `RemoteRunner.generate` straight against the fake upstream (20 tokens, 1 ms
apart, its own process and core) — no HTTP front, no serving core. Rounds alternate A/B.

The whole-path A/B (bench/ab_gateway.py) reads a server's CPU in 10 ms ticks on a shared machine,
which hides a change in one part; here the child's CPU (thread clock: the event loop's thread,
what the runner costs) is divided over many calls. Modes: `chat` (a whole answer) and `stream`
(a 20-token stream read to the end) at concurrency 1, 16 and 64.

    python bench/ab_upstream.py --base /tmp/base-checkout [--rounds 5] [--scale 1]

Prints one JSON line: per mode each side's median CPU µs per call and their ratio (B / A).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Not on sys.path here: a child must import its side's `batchin` (PYTHONPATH), not this tree's.
ROOT = Path(__file__).resolve().parent.parent
# (mode, stream, concurrency, calls at scale 1)
MODES = [
    ("chat_c1", False, 1, 300),
    ("chat_c16", False, 16, 2000),
    ("chat_c64", False, 64, 3000),
    ("stream_c1", True, 1, 100),
    ("stream_c16", True, 16, 800),
    ("stream_c64", True, 64, 1600),
]


async def _calls(url: str, stream: bool, concurrency: int, count: int) -> float:
    from batchin.models.base import ChatMessage, ChatParams, SamplingParams
    from batchin.models.remote import RemoteConfig, RemoteRunner

    config = RemoteConfig(
        model_id="bench",
        base_urls=(url,),
        upstream_model="fake",
        context_length=8192,
        max_concurrency=256,
        health_check_interval=0,
    )
    runner = RemoteRunner(config)
    params = ChatParams((ChatMessage("user", "Say hello"),), SamplingParams(max_tokens=64), stream=stream)
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            prepared = await runner.prepare_chat(params)
            async for _delta in runner.generate(prepared):
                pass

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm: connections made
        left = count
        start = time.thread_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return (time.thread_time() - start) / count
    finally:
        await runner.close()


def child(url: str, stream: bool, concurrency: int, count: int) -> None:
    import uvloop

    import batchin

    print(batchin.__file__, file=sys.stderr)  # which side this is, for a look at the log

    seconds = uvloop.run(_calls(url, stream, concurrency, count))
    print(json.dumps(seconds * 1e6))


def run_side(tree: str, url: str, stream: bool, concurrency: int, count: int) -> float:
    env = {**os.environ, "PYTHONPATH": tree}
    command = [sys.executable, __file__, "--child", url, str(int(stream)), str(concurrency), str(count)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        url, stream, concurrency, count = args.child
        child(url, stream == "1", int(concurrency), int(count))
        return
    if not args.base:
        parser.error("--base is required")
    sys.path.insert(0, str(ROOT))
    from bench.harness import ab_figure, fake_upstream_process

    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {0})  # the children inherit core 0; the upstream has core 1
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    result: dict[str, Any] = {"bench": "upstream_client_ab", "base": sides["A"], "rounds": args.rounds}
    with fake_upstream_process(core=1, tokens=20, delay_ms=1.0) as (url, _):
        for name, stream, concurrency, planned in MODES:
            count = max(concurrency, int(planned * args.scale))
            samples: dict[str, list[float]] = {"A": [], "B": []}
            for round_no in range(args.rounds):
                for side in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
                    samples[side].append(run_side(sides[side], url, stream, concurrency, count))
            result[name] = ab_figure(samples["A"], samples["B"], unit="_cpu_us", digits=1)
            print(name, result[name], file=sys.stderr, flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
