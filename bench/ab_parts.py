"""Same-run A/B of single pieces of the gateway's hot path, in isolation: a baseline checkout's
`batchin/` against this one's, each imported in its own child process, rounds alternating.

The whole-path A/B (bench/ab_gateway.py) reads a server's CPU from /proc in 10 ms ticks on a shared
machine, which hides changes of a few percent; here each piece runs alone, many times, timed with
the thread's CPU clock. Pieces (CPU µs per unit, median over rounds):

- `buffer_item`: one item through a generation's buffer (push by the producer task, read by the
  reader), 20 items per generation as in a 20-token stream;
- `disconnect_watch`: one `until_disconnect` around work that finishes (every non-streamed call);
- `observe`: a finished call's metrics (`InferenceService._observe`).

    python bench/ab_parts.py --base /tmp/base-checkout [--rounds 7]

Prints one JSON line: per piece the median of each side and their ratio (B / A).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PIECES = ("buffer_item", "disconnect_watch", "observe")


async def _buffer_item(generations: int, items: int = 20) -> float:
    from batchin.core.serving.generation import BufferedStream

    async def produce(stream: BufferedStream[int], opened: asyncio.Future[None]) -> None:
        stream.open(opened)
        for i in range(items):
            await stream.push(i)
            await asyncio.sleep(0)  # the engine's next token arrives in a later turn of the loop

    start = time.thread_time()
    for _ in range(generations):
        stream: BufferedStream[int] = BufferedStream(buffer_size=1024, stall_timeout=30)
        await stream.start(produce)
        async for _item in stream:
            pass
    return (time.thread_time() - start) / (generations * items)


async def _disconnect_watch(calls: int) -> float:
    from starlette.requests import Request

    from batchin.http_api.streaming import until_disconnect

    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/"}, receive)

    async def work() -> int:
        await asyncio.sleep(0)
        return 1

    start = time.thread_time()
    for _ in range(calls):
        await until_disconnect(request, work())
    return (time.thread_time() - start) / calls


def _observe(calls: int) -> float:
    from batchin.core.serving.generation import TextGeneration
    from batchin.core.serving.inference import InferenceService
    from batchin.core.serving.metrics import InferenceMetrics

    holder = type("Holder", (), {"_metrics": InferenceMetrics()})()
    gen = TextGeneration(buffer_size=4, stall_timeout=1, prompt_tokens=10)
    gen.stats.admitted_at, gen.stats.first_token_at, gen.stats.finished_at = 1.0, 1.01, 1.1
    gen.stats.completion_tokens = 20
    start = time.thread_time()
    for _ in range(calls):
        InferenceService._observe(holder, "remote-bench", "chat.completions", gen, "succeeded")
    return (time.thread_time() - start) / calls


def child(piece: str) -> None:
    """In the child: time one piece with the `batchin` on sys.path; print CPU µs per unit."""
    if piece == "buffer_item":
        asyncio.run(_buffer_item(50))  # warm-up
        seconds = asyncio.run(_buffer_item(1000))
    elif piece == "disconnect_watch":
        asyncio.run(_disconnect_watch(1000))
        seconds = asyncio.run(_disconnect_watch(20000))
    else:
        _observe(1000)
        seconds = _observe(50000)
    print(json.dumps(seconds * 1e6))


def run_side(tree: str, piece: str) -> float:
    env = {**os.environ, "PYTHONPATH": tree}
    done = subprocess.run(
        [sys.executable, __file__, "--child", piece], env=env, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", help="directory holding the baseline's batchin/")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", choices=PIECES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    if not args.base:
        parser.error("--base is required")
    sides = {"A": str(Path(args.base).resolve()), "B": str(ROOT)}
    result: dict[str, Any] = {"bench": "gateway_parts_ab", "base": sides["A"], "rounds": args.rounds}
    for piece in PIECES:
        samples: dict[str, list[float]] = {"A": [], "B": []}
        for round_no in range(args.rounds):
            for side in ("A", "B") if round_no % 2 == 0 else ("B", "A"):
                samples[side].append(run_side(sides[side], piece))
        a, b = statistics.median(samples["A"]), statistics.median(samples["B"])
        result[piece] = {"A_cpu_us": round(a, 2), "B_cpu_us": round(b, 2), "ratio": round(b / a, 2)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
